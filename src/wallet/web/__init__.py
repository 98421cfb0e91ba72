"""The HTTP edge around GraphQL: request ids and logs, limits, health and metrics."""
