// fleetfn Java runtime: the Context of one invoke. Owns the Context implementation built from a
// /next response's headers and the environment, and the small ClientContext, Client and
// CognitoIdentity implementations parsed from the JSON headers.
package dev.fleetfn.runtime;

import com.amazonaws.services.lambda.runtime.Client;
import com.amazonaws.services.lambda.runtime.ClientContext;
import com.amazonaws.services.lambda.runtime.CognitoIdentity;
import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.LambdaLogger;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

final class LambdaContext implements Context {

    static final String FUNCTION_NAME = env("AWS_LAMBDA_FUNCTION_NAME");
    static final String FUNCTION_VERSION = env("AWS_LAMBDA_FUNCTION_VERSION");
    static final String LOG_GROUP_NAME = env("AWS_LAMBDA_LOG_GROUP_NAME");
    static final String LOG_STREAM_NAME = env("AWS_LAMBDA_LOG_STREAM_NAME");
    static final int MEMORY_MB = parseInt(env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), 128);

    private final String requestId;
    private final long deadlineMs;
    private final String invokedFunctionArn;
    private final String traceId;
    private final String tenantId;
    private final String clientContextJson;
    private final String identityJson;
    private ClientContext clientContext;
    private CognitoIdentity identity;
    private boolean parsedClientContext;
    private boolean parsedIdentity;
    private LambdaLogger logger;

    LambdaContext(String requestId, long deadlineMs, String invokedFunctionArn, String traceId, String tenantId,
            String clientContextJson, String identityJson) {
        this.requestId = requestId;
        this.deadlineMs = deadlineMs;
        this.invokedFunctionArn = invokedFunctionArn;
        this.traceId = traceId;
        this.tenantId = tenantId;
        this.clientContextJson = clientContextJson;
        this.identityJson = identityJson;
    }

    /** The context of the invoke a /next response carries. */
    static LambdaContext fromNext(RuntimeApiClient.Response next, String requestId) {
        long deadline = parseLong(next.header("lambda-runtime-deadline-ms"), 0);
        if (deadline <= 0) {
            deadline = System.currentTimeMillis() + 900_000L;
        }
        return new LambdaContext(requestId, deadline, next.header("lambda-runtime-invoked-function-arn"),
                next.header("lambda-runtime-trace-id"), next.header("lambda-runtime-aws-tenant-id"),
                next.header("lambda-runtime-client-context"), next.header("lambda-runtime-cognito-identity"));
    }

    @Override
    public String getAwsRequestId() {
        return requestId;
    }

    @Override
    public String getLogGroupName() {
        return LOG_GROUP_NAME;
    }

    @Override
    public String getLogStreamName() {
        return LOG_STREAM_NAME;
    }

    @Override
    public String getFunctionName() {
        return FUNCTION_NAME;
    }

    @Override
    public String getFunctionVersion() {
        return FUNCTION_VERSION;
    }

    @Override
    public String getInvokedFunctionArn() {
        return invokedFunctionArn;
    }

    @Override
    public synchronized CognitoIdentity getIdentity() {
        if (!parsedIdentity) {
            parsedIdentity = true;
            identity = parseIdentity(identityJson);
        }
        return identity;
    }

    @Override
    public synchronized ClientContext getClientContext() {
        if (!parsedClientContext) {
            parsedClientContext = true;
            clientContext = parseClientContext(clientContextJson);
        }
        return clientContext;
    }

    @Override
    public int getRemainingTimeInMillis() {
        long left = deadlineMs - System.currentTimeMillis();
        return left <= 0 ? 0 : left >= Integer.MAX_VALUE ? Integer.MAX_VALUE : (int) left;
    }

    @Override
    public int getMemoryLimitInMB() {
        return MEMORY_MB;
    }

    @Override
    public synchronized LambdaLogger getLogger() {
        if (logger == null) {
            logger = Logging.forRequest(requestId);
        }
        return logger;
    }

    @Override
    public String getTenantId() {
        return tenantId;
    }

    @Override
    public String getXrayTraceId() {
        return traceId;
    }

    /** The deadline of the invoke, epoch milliseconds. */
    long deadlineMs() {
        return deadlineMs;
    }

    @Override
    public String toString() {
        return "LambdaContext{requestId=" + requestId + ", functionName=" + FUNCTION_NAME + ", functionVersion="
                + FUNCTION_VERSION + ", invokedFunctionArn=" + invokedFunctionArn + ", remainingTimeInMillis="
                + getRemainingTimeInMillis() + "}";
    }

    // -----------------------------------------------------------------------------------------
    // Headers

    private static Map<?, ?> parseObject(String json) {
        if (json == null || json.isEmpty()) {
            return null;
        }
        try {
            Object v = Json.parse(json);
            return v instanceof Map ? (Map<?, ?>) v : null;
        } catch (RuntimeException e) {
            Logging.diagnostic("ignoring a malformed JSON header: " + e.getMessage());
            return null;
        }
    }

    private static String str(Map<?, ?> map, String... keys) {
        if (map == null) {
            return null;
        }
        for (String k : keys) {
            Object v = map.get(k);
            if (v != null) {
                return v instanceof String ? (String) v : Json.toJson(v);
            }
        }
        return null;
    }

    private static Map<String, String> strings(Object v) {
        if (!(v instanceof Map)) {
            return null;
        }
        LinkedHashMap<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
            Object value = e.getValue();
            out.put((String) e.getKey(), value == null || value instanceof String ? (String) value : Json.toJson(value));
        }
        return Collections.unmodifiableMap(out);
    }

    static CognitoIdentity parseIdentity(String json) {
        Map<?, ?> map = parseObject(json);
        if (map == null) {
            return null;
        }
        return new Identity(str(map, "cognitoIdentityId", "identityId", "identity_id", "cognito_identity_id"),
                str(map, "cognitoIdentityPoolId", "identityPoolId", "identity_pool_id", "cognito_identity_pool_id"));
    }

    static ClientContext parseClientContext(String json) {
        Map<?, ?> map = parseObject(json);
        if (map == null) {
            return null;
        }
        Object c = map.get("client");
        AppClient client = null;
        if (c instanceof Map) {
            Map<?, ?> cm = (Map<?, ?>) c;
            client = new AppClient(str(cm, "installation_id", "installationId"), str(cm, "app_title", "appTitle"),
                    str(cm, "app_version_name", "appVersionName"), str(cm, "app_version_code", "appVersionCode"),
                    str(cm, "app_package_name", "appPackageName"));
        }
        Map<String, String> custom = strings(map.get("custom"));
        Map<String, String> environment = strings(map.containsKey("env") ? map.get("env") : map.get("environment"));
        return new ClientCtx(client, custom, environment);
    }

    static final class Identity implements CognitoIdentity {
        private final String identityId;
        private final String identityPoolId;

        Identity(String identityId, String identityPoolId) {
            this.identityId = identityId;
            this.identityPoolId = identityPoolId;
        }

        @Override
        public String getIdentityId() {
            return identityId;
        }

        @Override
        public String getIdentityPoolId() {
            return identityPoolId;
        }

        @Override
        public String toString() {
            return "CognitoIdentity{identityId=" + identityId + ", identityPoolId=" + identityPoolId + "}";
        }
    }

    static final class AppClient implements Client {
        private final String installationId;
        private final String appTitle;
        private final String appVersionName;
        private final String appVersionCode;
        private final String appPackageName;

        AppClient(String installationId, String appTitle, String appVersionName, String appVersionCode,
                String appPackageName) {
            this.installationId = installationId;
            this.appTitle = appTitle;
            this.appVersionName = appVersionName;
            this.appVersionCode = appVersionCode;
            this.appPackageName = appPackageName;
        }

        @Override
        public String getInstallationId() {
            return installationId;
        }

        @Override
        public String getAppTitle() {
            return appTitle;
        }

        @Override
        public String getAppVersionName() {
            return appVersionName;
        }

        @Override
        public String getAppVersionCode() {
            return appVersionCode;
        }

        @Override
        public String getAppPackageName() {
            return appPackageName;
        }

        @Override
        public String toString() {
            return "Client{installationId=" + installationId + ", appTitle=" + appTitle + ", appVersionName="
                    + appVersionName + ", appVersionCode=" + appVersionCode + ", appPackageName=" + appPackageName
                    + "}";
        }
    }

    static final class ClientCtx implements ClientContext {
        private final Client client;
        private final Map<String, String> custom;
        private final Map<String, String> environment;

        ClientCtx(Client client, Map<String, String> custom, Map<String, String> environment) {
            this.client = client;
            this.custom = custom;
            this.environment = environment;
        }

        @Override
        public Client getClient() {
            return client;
        }

        @Override
        public Map<String, String> getCustom() {
            return custom;
        }

        @Override
        public Map<String, String> getEnvironment() {
            return environment;
        }

        @Override
        public String toString() {
            return "ClientContext{client=" + client + ", custom=" + custom + ", environment=" + environment + "}";
        }
    }

    // -----------------------------------------------------------------------------------------

    private static String env(String name) {
        return System.getenv(name);
    }

    static int parseInt(String s, int fallback) {
        if (s == null) {
            return fallback;
        }
        try {
            return Integer.parseInt(s.trim());
        } catch (NumberFormatException e) {
            return fallback;
        }
    }

    static long parseLong(String s, long fallback) {
        if (s == null) {
            return fallback;
        }
        try {
            return Long.parseLong(s.trim());
        } catch (NumberFormatException e) {
            return fallback;
        }
    }
}
