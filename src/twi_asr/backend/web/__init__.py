"""The web app people use on port 8000: Jinja2 pages, plain JavaScript, no build step."""
