"""WSGI entry point for gunicorn: `gunicorn widget_server.wsgi:app`."""

from widget_server import create_app

app = create_app()
