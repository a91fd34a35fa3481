"""The reference pages, generated from the code so that they cannot drift from it: the trial config from its
schema, the component catalogue from the registry, the command line from the typer app.

`scripts/gen_reference.py` writes them into docs/reference/ (and `--check` names a stale one); `df-sweep config
--markdown` and `df-sweep components` print the same text. Nothing here is stated twice: every sentence of a table
is a docstring, a help text or a registered class's attribute."""
