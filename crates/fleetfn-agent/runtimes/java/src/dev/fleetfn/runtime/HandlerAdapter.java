// fleetfn Java runtime: the function's handler. Owns parsing _HANDLER, loading and
// instantiating the handler class once at init, choosing the handler method and its shape,
// finding the input type (through RequestHandler<I, O>'s type arguments), and running one invoke:
// event bytes in, response bytes out, or an InvokeFailure saying what to report.
package dev.fleetfn.runtime;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import com.amazonaws.services.lambda.runtime.RequestStreamHandler;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.Type;
import java.util.ArrayList;
import java.util.List;

final class HandlerAdapter {

    /** Stack frames reported per error. */
    static final int MAX_FRAMES = 50;

    /** A failure at init: reported to /init/error, then the process exits. */
    static final class InitFailure extends Exception {
        private static final long serialVersionUID = 1L;
        final String errorType;
        final Throwable source;

        InitFailure(String errorType, String message, Throwable source) {
            super(message, null, false, false);
            this.errorType = errorType;
            this.source = source;
        }

        List<String> stackTrace() {
            return frames(source);
        }
    }

    /** A failed invoke: reported to /invocation/{id}/error. */
    static final class InvokeFailure extends Exception {
        private static final long serialVersionUID = 1L;
        final String errorType;
        final Throwable source;

        InvokeFailure(String errorType, String message, Throwable source) {
            super(message, null, false, false);
            this.errorType = errorType;
            this.source = source;
        }

        List<String> stackTrace() {
            return frames(source);
        }
    }

    /** The handler's calling convention. */
    private enum Shape {
        /** RequestStreamHandler.handleRequest, called through the interface. */
        STREAM_INTERFACE,
        /** RequestHandler.handleRequest, called through the interface. */
        TYPED_INTERFACE,
        /** m(InputStream, OutputStream, Context). */
        STREAM_CONTEXT,
        /** m(InputStream, OutputStream). */
        STREAM,
        /** m(I, Context). */
        INPUT_CONTEXT,
        /** m(I). */
        INPUT,
        /** m(Context). */
        CONTEXT,
        /** m(). */
        NONE
    }

    private final Shape shape;
    private final Object instance;
    private final Method method;
    private final Type inputType;
    private final Class<?> inputClass;
    private final Serializers serializers;
    private final String description;

    private HandlerAdapter(Shape shape, Object instance, Method method, Type inputType, Serializers serializers,
            String description) {
        this.shape = shape;
        this.instance = instance;
        this.method = method;
        this.inputType = inputType;
        this.inputClass = inputType == null ? null : Json.rawClass(inputType);
        this.serializers = serializers;
        this.description = description;
    }

    @Override
    public String toString() {
        return description;
    }

    // =========================================================================================
    // Init

    /** Loads the handler {@code handlerString} names from {@code loader}. */
    static HandlerAdapter load(String handlerString, ClassLoader loader) throws InitFailure {
        String h = handlerString == null ? "" : handlerString.trim();
        if (h.isEmpty()) {
            throw new InitFailure("Runtime.MalformedHandlerName", "No handler is configured (_HANDLER is empty)",
                    null);
        }
        int sep = h.indexOf("::");
        String className = sep < 0 ? h : h.substring(0, sep);
        String methodName = sep < 0 ? null : h.substring(sep + 2);
        if (!isBinaryName(className) || (methodName != null && !isIdentifier(methodName))) {
            throw new InitFailure("Runtime.MalformedHandlerName", "Bad handler '" + h
                    + "': expected package.Class or package.Class::method", null);
        }
        Class<?> cls;
        try {
            cls = Class.forName(className, true, loader);
        } catch (ClassNotFoundException e) {
            throw new InitFailure("Runtime.ClassNotFound", "Class not found: " + className, e);
        } catch (Throwable t) {
            throw fromThrowable(t);
        }
        try {
            return methodName == null ? loadInterface(cls, loader) : loadMethod(cls, methodName, loader);
        } catch (InitFailure f) {
            throw f;
        } catch (Throwable t) {
            throw fromThrowable(t);
        }
    }

    /** An init failure reporting {@code t} (unwrapped to what user code threw). */
    static InitFailure fromThrowable(Throwable t) {
        Throwable u = unwrap(t);
        return new InitFailure(u.getClass().getName(), messageOf(u), u);
    }

    private static HandlerAdapter loadInterface(Class<?> cls, ClassLoader loader) throws Exception {
        if (RequestStreamHandler.class.isAssignableFrom(cls)) {
            Object instance = instantiate(cls);
            return new HandlerAdapter(Shape.STREAM_INTERFACE, instance, null, null, null,
                    cls.getName() + " (RequestStreamHandler)");
        }
        if (RequestHandler.class.isAssignableFrom(cls)) {
            Type input = Json.typeArgument(cls, RequestHandler.class, 0);
            if (Json.rawClass(input) == Object.class) {
                // A raw or loosely typed implementation: the non-bridge handleRequest's parameter.
                Method m = bestMethod(cls, "handleRequest");
                if (m != null && m.getParameterCount() == 2) {
                    input = Json.resolve(m.getGenericParameterTypes()[0], Json.typeBindings(cls));
                }
            }
            Object instance = instantiate(cls);
            return new HandlerAdapter(Shape.TYPED_INTERFACE, instance, null, input, Serializers.create(loader, input),
                    cls.getName() + " (RequestHandler<" + input.getTypeName() + ", ?>)");
        }
        throw new InitFailure("Runtime.HandlerNotFound", "Class " + cls.getName()
                + " implements neither RequestHandler nor RequestStreamHandler; name its handler method as "
                + cls.getName() + "::method", null);
    }

    private static HandlerAdapter loadMethod(Class<?> cls, String name, ClassLoader loader) throws Exception {
        Method m = bestMethod(cls, name);
        if (m == null) {
            throw new InitFailure("Runtime.HandlerNotFound", "No public method named " + name + " in class "
                    + cls.getName() + " with a supported signature: (InputStream, OutputStream[, Context]), "
                    + "(input[, Context]), (Context) or ()", null);
        }
        Shape shape = shapeOf(m);
        m.trySetAccessible();
        Object instance = Modifier.isStatic(m.getModifiers()) ? null : instantiate(cls);
        Type input = null;
        if (shape == Shape.INPUT || shape == Shape.INPUT_CONTEXT) {
            input = Json.resolve(m.getGenericParameterTypes()[0], Json.typeBindings(cls));
        }
        boolean needsJson = input != null || (shape != Shape.STREAM && shape != Shape.STREAM_CONTEXT
                && m.getReturnType() != void.class);
        Serializers serializers = needsJson ? Serializers.create(loader, input) : null;
        return new HandlerAdapter(shape, instance, m, input, serializers, m.toGenericString());
    }

    /** The shape of {@code m}, or null when it is not a handler signature. */
    private static Shape shapeOf(Method m) {
        Class<?>[] p = m.getParameterTypes();
        switch (p.length) {
            case 0:
                return Shape.NONE;
            case 1:
                return p[0] == Context.class ? Shape.CONTEXT : Shape.INPUT;
            case 2:
                if (p[0] == InputStream.class && p[1] == OutputStream.class) {
                    return Shape.STREAM;
                }
                return p[1].isAssignableFrom(Context.class) ? Shape.INPUT_CONTEXT : null;
            case 3:
                return p[0] == InputStream.class && p[1] == OutputStream.class && p[2].isAssignableFrom(Context.class)
                        ? Shape.STREAM_CONTEXT : null;
            default:
                return null;
        }
    }

    /**
     * The public, non-bridge method named {@code name} with a handler shape; among several, the
     * one with the most parameters, then the one whose last parameter is the Context, then the
     * most specific input type, then the most derived declaring class.
     */
    private static Method bestMethod(Class<?> cls, String name) {
        Method best = null;
        for (Method m : cls.getMethods()) {
            if (!m.getName().equals(name) || m.isBridge() || m.isSynthetic() || shapeOf(m) == null) {
                continue;
            }
            if (best == null || better(m, best)) {
                best = m;
            }
        }
        return best;
    }

    private static boolean better(Method a, Method b) {
        int pa = a.getParameterCount();
        int pb = b.getParameterCount();
        if (pa != pb) {
            return pa > pb;
        }
        if (pa == 0) {
            return a.getDeclaringClass() != b.getDeclaringClass()
                    && b.getDeclaringClass().isAssignableFrom(a.getDeclaringClass());
        }
        Class<?>[] ta = a.getParameterTypes();
        Class<?>[] tb = b.getParameterTypes();
        boolean ca = ta[pa - 1] == Context.class;
        boolean cb = tb[pb - 1] == Context.class;
        if (ca != cb) {
            return ca;
        }
        Class<?> ia = ta[0];
        Class<?> ib = tb[0];
        if (ia != ib) {
            if (ib.isAssignableFrom(ia)) {
                return true;
            }
            if (ia.isAssignableFrom(ib)) {
                return false;
            }
            return ia.getName().compareTo(ib.getName()) < 0;
        }
        return b.getDeclaringClass().isAssignableFrom(a.getDeclaringClass());
    }

    private static Object instantiate(Class<?> cls) throws Exception {
        if (cls.isInterface() || Modifier.isAbstract(cls.getModifiers())) {
            throw new InitFailure("java.lang.InstantiationException", "Class " + cls.getName()
                    + " is abstract or an interface and cannot be the handler", null);
        }
        Constructor<?> c;
        try {
            c = cls.getDeclaredConstructor();
        } catch (NoSuchMethodException e) {
            throw new InitFailure("java.lang.NoSuchMethodException", "Class " + cls.getName()
                    + " has no no-argument constructor", e);
        }
        c.trySetAccessible();
        try {
            return c.newInstance();
        } catch (InvocationTargetException e) {
            throw fromThrowable(e);
        }
    }

    private static boolean isIdentifier(String s) {
        if (s.isEmpty() || !Character.isJavaIdentifierStart(s.charAt(0))) {
            return false;
        }
        for (int i = 1; i < s.length(); i++) {
            if (!Character.isJavaIdentifierPart(s.charAt(i))) {
                return false;
            }
        }
        return true;
    }

    private static boolean isBinaryName(String s) {
        if (s.isEmpty() || s.startsWith(".") || s.endsWith(".") || s.contains("..")) {
            return false;
        }
        int start = 0;
        for (;;) {
            int dot = s.indexOf('.', start);
            String part = dot < 0 ? s.substring(start) : s.substring(start, dot);
            if (!isIdentifier(part)) {
                return false;
            }
            if (dot < 0) {
                return true;
            }
            start = dot + 1;
        }
    }

    // =========================================================================================
    // Invoke

    /** Runs one invoke; returns the response body. */
    byte[] invoke(byte[] event, Context context) throws InvokeFailure {
        switch (shape) {
            case STREAM_INTERFACE: {
                ByteArrayOutputStream out = new ByteArrayOutputStream(256);
                try {
                    ((RequestStreamHandler) instance).handleRequest(new ByteArrayInputStream(event), out, context);
                } catch (Throwable t) {
                    throw userFailure(t);
                }
                return out.toByteArray();
            }
            case STREAM:
            case STREAM_CONTEXT: {
                ByteArrayOutputStream out = new ByteArrayOutputStream(256);
                InputStream in = new ByteArrayInputStream(event);
                call(shape == Shape.STREAM ? new Object[] {in, out} : new Object[] {in, out, context});
                return out.toByteArray();
            }
            case TYPED_INTERFACE: {
                Object input = readInput(event);
                Object result;
                try {
                    @SuppressWarnings("unchecked")
                    RequestHandler<Object, Object> handler = (RequestHandler<Object, Object>) instance;
                    result = handler.handleRequest(input, context);
                } catch (Throwable t) {
                    throw userFailure(t);
                }
                return writeResult(result);
            }
            case INPUT:
                return writeResult(call(new Object[] {readInput(event)}));
            case INPUT_CONTEXT:
                return writeResult(call(new Object[] {readInput(event), context}));
            case CONTEXT:
                return writeResult(call(new Object[] {context}));
            case NONE:
            default:
                return writeResult(call(new Object[0]));
        }
    }

    private Object call(Object[] args) throws InvokeFailure {
        try {
            return method.invoke(instance, args);
        } catch (Throwable t) {
            throw userFailure(t);
        }
    }

    private Object readInput(byte[] event) throws InvokeFailure {
        if (inputClass == InputStream.class) {
            return new ByteArrayInputStream(event);
        }
        if (event.length == 0) {
            return Json.defaultFor(inputClass);
        }
        try {
            Object value = serializers.read(event);
            return value == null ? Json.defaultFor(inputClass) : value;
        } catch (Throwable t) {
            Throwable u = unwrap(t);
            throw new InvokeFailure(u.getClass().getName(), "Could not map the event to " + inputType.getTypeName()
                    + ": " + messageOf(u), u);
        }
    }

    private byte[] writeResult(Object result) throws InvokeFailure {
        if (serializers == null) {
            return Json.toBytes(result);
        }
        try {
            return serializers.write(result);
        } catch (Throwable t) {
            Throwable u = unwrap(t);
            throw new InvokeFailure("Runtime.SerializationError", "Could not serialize the result ("
                    + result.getClass().getName() + ") to JSON: " + messageOf(u), u);
        }
    }

    private static InvokeFailure userFailure(Throwable t) {
        Throwable u = unwrap(t);
        return new InvokeFailure(u.getClass().getName(), messageOf(u), u);
    }

    // =========================================================================================
    // Errors

    /** {@code t} without reflection and class-initialization wrappers. */
    static Throwable unwrap(Throwable t) {
        Throwable u = t;
        for (int i = 0; i < 16; i++) {
            Throwable cause = u.getCause();
            if (cause == null || cause == u) {
                break;
            }
            if (u instanceof InvocationTargetException || u instanceof ExceptionInInitializerError
                    || u instanceof java.lang.reflect.UndeclaredThrowableException) {
                u = cause;
            } else {
                break;
            }
        }
        return u;
    }

    /** The message of {@code t}; its class name when it has none. */
    static String messageOf(Throwable t) {
        String m = t.getMessage();
        return m != null ? m : t.getClass().getName();
    }

    /** The first frames of {@code t}'s stack trace as strings. */
    static List<String> frames(Throwable t) {
        ArrayList<String> out = new ArrayList<>();
        if (t == null) {
            return out;
        }
        StackTraceElement[] st = t.getStackTrace();
        int n = Math.min(st.length, MAX_FRAMES);
        for (int i = 0; i < n; i++) {
            out.add(st[i].toString());
        }
        return out;
    }
}
