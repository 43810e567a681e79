"""The function the template tests deploy: answers which greeting and version it runs with."""

import os


def handler(event, context):
    return {
        "greeting": os.environ.get("GREETING"),
        "stage": os.environ.get("STAGE"),
        "version": context.function_version,
        "echo": event,
    }
