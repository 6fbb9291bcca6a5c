"""GitHub integration: the client (client.py) every call goes through, and the webhook receiver."""
