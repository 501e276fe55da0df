# The brainobs worker image (used by docker-compose.yml and the Kubernetes recipe).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends graphviz && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/brainobs
COPY . .
RUN pip install --no-cache-dir . && useradd --create-home brainobs
USER brainobs
ENTRYPOINT []
CMD ["brainobs", "worker"]
