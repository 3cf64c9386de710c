# kotae on an NVIDIA GPU: vLLM 0.26's image (CUDA, torch and vLLM built for each other) plus kotae and
# the wheels it needs beyond that image (scripts/gpu/wheels.txt).
#   docker build -t kotae:gpu .
#   docker run --rm --gpus all -p 127.0.0.1:8000:8000 -v kotae-data:/data kotae:gpu
FROM vllm/vllm-openai:v0.26.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY scripts/gpu/wheels.txt scripts/gpu/wheels.txt
# The image's torch, vLLM and transformers stay as they are: only what is missing is added.
RUN python3 -m pip install --no-cache-dir -r scripts/gpu/wheels.txt \
        "sentence-transformers>=5" "faiss-cpu>=1.9" "peft>=0.15" typer rich prometheus-client
# kotae/'s links (kotae/rag -> ../rag, …) are copied as links: the folders they name come next.
COPY kotae kotae
COPY rag rag
COPY indexer indexer
COPY evals evals
COPY adapters adapters
COPY server server
RUN python3 -m pip install --no-cache-dir --no-deps .

RUN useradd --create-home --uid 10001 kotae && mkdir -p /data && chown kotae:kotae /data
USER kotae
ENV KOTAE_HOME=/data \
    KOTAE_HOST=0.0.0.0 \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
# vLLM's image starts `vllm serve`; kotae runs its own server on the same engine.
ENTRYPOINT ["kotae"]
CMD ["serve"]
