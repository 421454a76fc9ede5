"""Several jsongle processes sharing one set of rooms through Redis."""
