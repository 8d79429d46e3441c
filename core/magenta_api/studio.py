"""The studio: a web page at ``/`` to try the models, served by the service itself.

Every asset is in the package (``static/studio`` is ours, ``static/vendor`` holds the npm packages
named in ``static/package-lock.json``, copied by ``make vendor``), so the page needs no CDN. The page
calls the public API only (``/v1/models``, ``/v1/generate``, ``/v1/live``), the same requests a user
could send with curl, and shows the API's own error messages.
"""

from flask import Blueprint, render_template

bp = Blueprint("studio", __name__, static_folder="static", static_url_path="/static", template_folder="templates")


@bp.get("/")
def page():
    from . import __version__

    return render_template("studio.html", version=__version__)
