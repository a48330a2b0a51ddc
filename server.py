"""The dashboard's web server: Streamlit serving streamlit_app.py, with Bellwether's door in front (views/_gate.py).

`make run` serves this file (`streamlit run server.py`): Streamlit finds the ``app`` below and runs it with uvicorn,
taking the usual --server.* flags and .streamlit/config.toml. It adds an HttpOnly session cookie and refuses uploads
from browsers that are not signed in with an account that may upload.
"""

from __future__ import annotations

import streamlit as st
from starlette.middleware import Middleware

from views import _gate

_gate.installed = True
app = st.App("streamlit_app.py", routes=_gate.routes(), middleware=[Middleware(_gate.UploadGate)])
