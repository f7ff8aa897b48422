"""Documents -> bytes. Renderers never write files; publish.py does."""
