// fleetfn Java runtime: the entry point (main class dev.fleetfn.runtime.Bootstrap). Owns start-up
// (environment, the function's class loader, loading the handler once on the main thread and
// reporting /init/error when that fails), and the worker threads: AWS_LAMBDA_MAX_CONCURRENCY
// platform threads, each with its own Runtime API connection, looping GET /next → handler →
// POST /response or /error until the process is killed.
package dev.fleetfn.runtime;

import java.io.File;
import java.io.IOException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

public final class Bootstrap {

    private static final String NEXT = RuntimeApiClient.BASE + "/invocation/next";
    private static final String INVOCATION = RuntimeApiClient.BASE + "/invocation/";
    private static final String INIT_ERROR = RuntimeApiClient.BASE + "/init/error";
    private static final String XRAY_PROPERTY = "com.amazonaws.xray.traceHeader";

    private Bootstrap() {
    }

    public static void main(String[] args) {
        Logging.init();
        String api = System.getenv("AWS_LAMBDA_RUNTIME_API");
        if (api == null || api.trim().isEmpty()) {
            Logging.diagnostic("AWS_LAMBDA_RUNTIME_API is not set");
            System.exit(1);
            return;
        }
        try {
            new RuntimeApiClient(api);
        } catch (RuntimeException e) {
            Logging.diagnostic("bad AWS_LAMBDA_RUNTIME_API '" + api + "': " + e.getMessage());
            System.exit(1);
            return;
        }
        int concurrency = Math.max(1, LambdaContext.parseInt(System.getenv("AWS_LAMBDA_MAX_CONCURRENCY"), 1));
        String root = System.getenv("LAMBDA_TASK_ROOT");
        if (root == null || root.isEmpty()) {
            root = System.getProperty("user.dir");
        }

        ClassLoader loader;
        HandlerAdapter handler;
        try {
            loader = functionClassLoader(new File(root), layerLib());
            Thread.currentThread().setContextClassLoader(loader);
            handler = HandlerAdapter.load(System.getenv("_HANDLER"), loader);
        } catch (HandlerAdapter.InitFailure f) {
            failInit(api, f.errorType, f.getMessage(), f.stackTrace());
            return;
        } catch (Throwable t) {
            HandlerAdapter.InitFailure f = HandlerAdapter.fromThrowable(t);
            failInit(api, f.errorType, f.getMessage(), f.stackTrace());
            return;
        }

        Thread[] workers = new Thread[concurrency];
        for (int k = 0; k < concurrency; k++) {
            Thread t = new Thread(new Worker(api, handler, concurrency == 1), "lambda-worker-" + k);
            t.setContextClassLoader(loader);
            workers[k] = t;
        }
        for (Thread t : workers) {
            t.start();
        }
        for (Thread t : workers) {
            for (;;) {
                try {
                    t.join();
                    break;
                } catch (InterruptedException e) {
                    // keep waiting: the workers run until the process is killed
                }
            }
        }
    }

    /** The layers' jar directory (`/opt/java/lib`, as the agent passes it), or null. */
    static File layerLib() {
        String dir = System.getProperty("fleetfn.layers.lib");
        return dir == null || dir.isEmpty() ? null : new File(dir);
    }

    /**
     * The function's class path, as Lambda's: LAMBDA_TASK_ROOT (classes and resources), its
     * lib/*.jar, then the layers' java/lib/*.jar (`layerLib`, may be null), each sorted by name.
     * The parent is this runtime's loader, so the Lambda interfaces are always fleetfn's, even
     * when the function bundles aws-lambda-java-core.
     */
    static ClassLoader functionClassLoader(File root, File layerLib) throws IOException {
        List<URL> urls = new ArrayList<>();
        urls.add(root.getAbsoluteFile().toURI().toURL());
        addJars(urls, new File(root, "lib"));
        if (layerLib != null) {
            addJars(urls, layerLib);
        }
        return new URLClassLoader("function", urls.toArray(new URL[0]), Bootstrap.class.getClassLoader());
    }

    private static void addJars(List<URL> urls, File dir) throws IOException {
        File[] jars = dir.listFiles();
        if (jars != null) {
            Arrays.sort(jars);
            for (File jar : jars) {
                if (jar.getName().endsWith(".jar") && jar.isFile()) {
                    urls.add(jar.getAbsoluteFile().toURI().toURL());
                }
            }
        }
    }

    /** Logs and reports an init failure, then exits with status 1. */
    private static void failInit(String api, String errorType, String message, List<String> stack) {
        Logging.initError(errorType, message, stack);
        byte[] body = Logging.errorBody(errorType, message, stack).getBytes(StandardCharsets.UTF_8);
        RuntimeApiClient client = new RuntimeApiClient(api);
        try {
            RuntimeApiClient.Response r = client.post(INIT_ERROR, body, "application/json", errorTypeHeader(errorType));
            if (r.status / 100 != 2) {
                Logging.diagnostic("POST /init/error answered " + r.status + ": " + r.bodyText());
            }
        } catch (IOException | RuntimeException e) {
            Logging.diagnostic("could not report the init error: " + e);
        } finally {
            client.close();
        }
        System.exit(1);
    }

    private static String errorTypeHeader(String errorType) {
        StringBuilder sb = new StringBuilder("Lambda-Runtime-Function-Error-Type: ");
        for (int i = 0; i < errorType.length(); i++) {
            char c = errorType.charAt(i);
            sb.append(c >= 0x20 && c < 0x7F ? c : '?');
        }
        return sb.toString();
    }

    /** One invoke loop with its own connection. */
    private static final class Worker implements Runnable {
        private final String api;
        private final HandlerAdapter handler;
        private final boolean setTraceProperty;

        Worker(String api, HandlerAdapter handler, boolean setTraceProperty) {
            this.api = api;
            this.handler = handler;
            this.setTraceProperty = setTraceProperty;
        }

        @Override
        public void run() {
            RuntimeApiClient client = new RuntimeApiClient(api);
            long backoff = 0;
            for (;;) {
                try {
                    if (backoff > 0) {
                        sleep(backoff);
                    }
                    RuntimeApiClient.Response next = client.get(NEXT);
                    if (next.status != 200) {
                        if (backoff == 0) {
                            Logging.diagnostic("GET /next answered " + next.status + ": " + next.bodyText());
                        }
                        backoff = grow(backoff);
                        continue;
                    }
                    backoff = 0;
                    serve(client, next);
                } catch (IOException e) {
                    if (backoff == 0) {
                        Logging.diagnostic(Thread.currentThread().getName() + ": Runtime API request failed: " + e);
                    }
                    client.close();
                    backoff = grow(backoff);
                } catch (Throwable t) {
                    // Out of memory or a bug of the runtime: keep serving.
                    try {
                        Logging.diagnostic(Thread.currentThread().getName() + ": " + t);
                    } catch (Throwable ignored) {
                        // nothing left to do
                    }
                    client.close();
                    backoff = grow(backoff);
                }
            }
        }

        private static long grow(long backoff) {
            return backoff == 0 ? 10 : Math.min(backoff * 2, 1000);
        }

        private static void sleep(long ms) {
            try {
                Thread.sleep(ms);
            } catch (InterruptedException e) {
                // go on
            }
        }

        private void serve(RuntimeApiClient client, RuntimeApiClient.Response next) throws IOException {
            String id = next.header("lambda-runtime-aws-request-id");
            if (id == null || id.isEmpty()) {
                Logging.diagnostic("GET /next answered without Lambda-Runtime-Aws-Request-Id; skipped");
                return;
            }
            LambdaContext context = LambdaContext.fromNext(next, id);
            byte[] body = null;
            HandlerAdapter.InvokeFailure failure = null;
            Logging.setCurrentRequest(id);
            if (setTraceProperty) {
                String trace = context.getXrayTraceId();
                if (trace != null) {
                    System.setProperty(XRAY_PROPERTY, trace);
                } else {
                    System.clearProperty(XRAY_PROPERTY);
                }
            }
            try {
                body = handler.invoke(next.body, context);
            } catch (HandlerAdapter.InvokeFailure f) {
                failure = f;
            } finally {
                Logging.setCurrentRequest(null);
            }
            String base = INVOCATION + RuntimeApiClient.pathSegment(id);
            RuntimeApiClient.Response r;
            if (failure == null) {
                r = client.post(base + "/response", body, null, null);
            } else {
                List<String> stack = failure.stackTrace();
                String message = failure.getMessage();
                Logging.invokeError(id, failure.errorType, message, stack);
                byte[] error = Logging.errorBody(failure.errorType, message, stack).getBytes(StandardCharsets.UTF_8);
                r = client.post(base + "/error", error, "application/json", errorTypeHeader(failure.errorType));
            }
            if (r.status / 100 != 2) {
                Logging.diagnostic("POST " + (failure == null ? "/response" : "/error") + " for " + id
                        + " answered " + r.status + ": " + r.bodyText());
            }
        }
    }
}
