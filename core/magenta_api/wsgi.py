"""The WSGI entry point gunicorn serves (``magenta_api.wsgi:app``): logging from LOG_LEVEL, then the app."""

from .app import create_app
from .config import Settings
from .logs import setup_logging

settings = Settings.from_env()
setup_logging(settings.log_level)
app = create_app(settings)
