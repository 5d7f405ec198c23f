"""``lineage serve``: the ASGI app (FastAPI on uvicorn), its one writer, its reader, the console."""
