// fleetfn Java runtime: the Amazon Cognito identity of the caller (AWS's public name and
// signatures).
package com.amazonaws.services.lambda.runtime;

/** The caller's Amazon Cognito identity. */
public interface CognitoIdentity {

    String getIdentityId();

    String getIdentityPoolId();
}
