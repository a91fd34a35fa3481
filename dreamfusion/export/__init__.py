"""Taking a trial's result away: its field's weights as one file (`weights.py`), a mesh by marching cubes with
vertex colours (`mesh.py`) and the mesh measurements the toy world scores (`geometry.py`), high-resolution re-renders
in every shading mode (`views.py`) and an mp4 turntable (`video.py`). Below the trial layer: a trial writes its
final artifacts with it, and `df-sweep export` re-makes them from a logged trial (`dreamfusion/export_run.py`)."""
