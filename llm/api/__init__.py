"""HTTP transports: the JSON + SSE API under /api/v1/ and the OpenAI-compatible /v1/."""
