"""Lichen Field: the technicians' web app, served by the cloud role at ``/field/``
(docs/field.md#lichen-field).

==========================  ==================================================
:mod:`.app`                 the static route: the app's files, their types and headers
``static/``                 the app: HTML, CSS, JavaScript modules, the service
                            worker and the web app manifest (no build step)
==========================  ==================================================
"""

from __future__ import annotations

from .app import FIELD_PATH, field_file, field_files, field_response

__all__ = ["FIELD_PATH", "field_file", "field_files", "field_response"]
