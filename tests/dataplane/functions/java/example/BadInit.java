package example;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;

/** A handler whose construction fails: the publish fails with the reason. */
public class BadInit implements RequestHandler<Object, Object> {
    public BadInit() {
        throw new IllegalStateException("no database configured");
    }

    @Override
    public Object handleRequest(Object input, Context context) {
        return input;
    }
}
