// fleetfn Java runtime: the invoke context handed to a handler (AWS's public interface name and
// signatures; fleetfn's own implementation is dev.fleetfn.runtime.LambdaContext).
package com.amazonaws.services.lambda.runtime;

/** What a handler knows about the invoke it serves and the function it belongs to. */
public interface Context {

    /** The invoke's request id. */
    String getAwsRequestId();

    /** The CloudWatch Logs group of the function. */
    String getLogGroupName();

    /** The CloudWatch Logs stream of this execution environment. */
    String getLogStreamName();

    /** The function's name. */
    String getFunctionName();

    /** The version of the function that runs. */
    String getFunctionVersion();

    /** The ARN the caller invoked (may carry a version or alias). */
    String getInvokedFunctionArn();

    /** The caller's Amazon Cognito identity, or null. */
    CognitoIdentity getIdentity();

    /** The client context a mobile SDK caller sent, or null. */
    ClientContext getClientContext();

    /** Milliseconds left until the invoke's deadline (never below 0). */
    int getRemainingTimeInMillis();

    /** The memory configured for the function, in MB. */
    int getMemoryLimitInMB();

    /** A logger whose lines carry this invoke's request id. */
    LambdaLogger getLogger();

    /** The tenant the invoke belongs to (tenant isolation mode), or null. */
    default String getTenantId() {
        return null;
    }

    /** The X-Ray trace header of the invoke, or null. */
    default String getXrayTraceId() {
        return null;
    }
}
