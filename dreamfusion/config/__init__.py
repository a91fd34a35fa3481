"""The trial config: its typed schema (`schema.py`) and how files, `--set` overrides and MLflow params become it
(`files.py`). Lower layers import the schema alone; only the edges of the program read files."""
