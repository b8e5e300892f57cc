# The image every role pod runs: TensorFlow 2.21 with GPU support and the tfdist runtime.
# Build from the repository root:  docker build -f docker/trainer.Dockerfile -t tfdist-trainer .
FROM tensorflow/tensorflow:2.21.0-gpu

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md constraints.txt /src/
COPY components /src/components
COPY operators /src/operators
# The GPU base image already has TensorFlow; install the runtime without a second copy of it.
RUN pip install --no-deps /src \
 && pip install -c /src/constraints.txt "pydantic>=2.7,<3" pyyaml psutil tensorboard scikit-learn \
 && useradd --uid 1000 --create-home trainer
USER 1000
WORKDIR /home/trainer
# The runtime is PID 1 in its container (the pod's command is `python -m tfdist.runtime` too),
# where SIGTERM has no default action: it installs its own SIGTERM handler first thing, and
# a preemption notice becomes a checkpoint (README: "Spot capacity"). A `trainer.command`
# program runs as PID 1 the same way and must handle SIGTERM itself.
ENTRYPOINT ["python", "-m", "tfdist.runtime"]
