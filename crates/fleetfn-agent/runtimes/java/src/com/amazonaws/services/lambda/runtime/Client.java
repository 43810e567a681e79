// fleetfn Java runtime: the client application of a client context (AWS's public name and
// signatures).
package com.amazonaws.services.lambda.runtime;

/** The application that made the invoke. */
public interface Client {

    String getInstallationId();

    String getAppTitle();

    String getAppVersionName();

    String getAppVersionCode();

    String getAppPackageName();
}
