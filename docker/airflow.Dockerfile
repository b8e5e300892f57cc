# Airflow 3.3 with the tfdist operators and the example DAGs.
# Build from the repository root:  docker build -f docker/airflow.Dockerfile -t tfdist-airflow .
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root pyproject.toml README.md constraints.txt /opt/tfdist/
COPY --chown=airflow:root components /opt/tfdist/components
COPY --chown=airflow:root operators /opt/tfdist/operators
# Operators only: roles run in trainer pods, so no TensorFlow in the Airflow image.
RUN pip install --no-cache-dir -c /opt/tfdist/constraints.txt "/opt/tfdist[airflow,gcs,kubernetes]"
COPY --chown=airflow:root dags /opt/airflow/dags
