"""Bellwether engine: storage, ingestion, training, evaluation, scoring, trends and the job queue.

A plain Python package with no Streamlit import; the dashboard and the command line both call it.
"""

__version__ = "0.1.0"
