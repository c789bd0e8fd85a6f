"""The web app people use on port 8000: Jinja2 templates, plain JavaScript and CSS, no build step.

The routes that render them are ``api/routes_pages.py``; this package only renders.
"""
