#!/bin/sh
# The function's handler under the Lambda Web Adapter: /opt/bootstrap (AWS_LAMBDA_EXEC_WRAPPER)
# execs $LAMBDA_TASK_ROOT/$_HANDLER, which starts the web application on $AWS_LWA_PORT.
exec python3 "$LAMBDA_TASK_ROOT/server.py"
