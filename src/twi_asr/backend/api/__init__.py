"""The HTTP layer of the backend: FastAPI routes that parse input and shape output, nothing more."""
