package example;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import java.util.List;

/** A POJO handler: the event is bound to Request, the Response is serialized from getters. */
public class Greeter implements RequestHandler<Greeter.Request, Greeter.Response> {
    public static class Request {
        private String name;
        private int count;
        private List<String> tags;

        public String getName() { return name; }
        public void setName(String name) { this.name = name; }
        public int getCount() { return count; }
        public void setCount(int count) { this.count = count; }
        public List<String> getTags() { return tags; }
        public void setTags(List<String> tags) { this.tags = tags; }
    }

    public static class Response {
        private final String greeting;
        private final int doubled;
        private final int tagCount;

        Response(String greeting, int doubled, int tagCount) {
            this.greeting = greeting;
            this.doubled = doubled;
            this.tagCount = tagCount;
        }

        public String getGreeting() { return greeting; }
        public int getDoubled() { return doubled; }
        public int getTagCount() { return tagCount; }
    }

    @Override
    public Response handleRequest(Request request, Context context) {
        int tags = request.getTags() == null ? 0 : request.getTags().size();
        return new Response("hello " + request.getName(), request.getCount() * 2, tags);
    }
}
