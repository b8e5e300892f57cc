"""The Training view: one run's train-and-evaluate step on one page of the Airflow UI.

`model` builds a frozen view model from what the run wrote (pure), `charts` and `page` render it
as HTML with inline SVG (pure, no JavaScript), `read` fetches the records from storage and the
roles' logs, and `app` serves it from Airflow's API server (the only module importing Airflow).
"""
