# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HEBDO_INSTANCE=/var/lib/hebdo
COPY pyproject.toml README.md ./
COPY service ./service
COPY worker ./worker
COPY templates ./templates
RUN pip install --no-cache-dir -e . && useradd --system --home /var/lib/hebdo hebdo \
    && mkdir -p /var/lib/hebdo && chown hebdo /var/lib/hebdo
USER hebdo
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "3", "service.app:create_app()"]
