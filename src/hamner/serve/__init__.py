"""hamner serve: a web page and a JSON API for tagging posts (FastAPI; imported only by ``hamner serve``)."""
