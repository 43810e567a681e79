package example;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import java.util.LinkedHashMap;
import java.util.Map;

/** tests/dataplane's Java function: echo, sleep (for concurrency), throw, context. */
public class Echo implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    @Override
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        Object op = event == null ? null : event.get("op");
        if ("sleep".equals(op)) {
            long ms = ((Number) event.get("ms")).longValue();
            double start = System.currentTimeMillis() / 1000.0;
            try {
                Thread.sleep(ms);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("start", start);
            out.put("end", System.currentTimeMillis() / 1000.0);
            out.put("thread", Thread.currentThread().getName());
            return out;
        }
        if ("throw".equals(op)) {
            throw new IllegalStateException("boom: " + event.get("why"));
        }
        if ("context".equals(op)) {
            context.getLogger().log("hello from java " + context.getAwsRequestId());
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("requestId", context.getAwsRequestId());
            out.put("functionName", context.getFunctionName());
            out.put("version", context.getFunctionVersion());
            out.put("arn", context.getInvokedFunctionArn());
            out.put("memory", context.getMemoryLimitInMB());
            out.put("remaining", context.getRemainingTimeInMillis());
            out.put("logGroup", context.getLogGroupName());
            out.put("javaVersion", System.getProperty("java.version"));
            return out;
        }
        return event;
    }
}
