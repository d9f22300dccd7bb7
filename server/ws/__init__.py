"""The GraphQL WebSocket endpoint: graphql-transport-ws and legacy graphql-ws, on raw ASGI."""
