// fleetfn Java runtime: event and result (de)serialization for typed handlers. Owns the choice
// between the function's own Jackson (com.fasterxml.jackson.databind.ObjectMapper, used
// reflectively when the function bundles it) and fleetfn's Json, and the Jackson bridge.
package dev.fleetfn.runtime;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Type;
import java.nio.charset.StandardCharsets;

final class Serializers {

    private static final byte[] NULL = "null".getBytes(StandardCharsets.US_ASCII);

    private final Type inputType;
    private final boolean inputByJackson;
    private final Jackson jackson;
    private final Object inputJavaType;

    private Serializers(Type inputType, Jackson jackson) throws ReflectiveOperationException {
        this.inputType = inputType;
        this.jackson = jackson;
        Class<?> raw = inputType == null ? Object.class : Json.rawClass(inputType);
        this.inputByJackson = jackson != null && inputType != null && !ownJsonFits(raw);
        this.inputJavaType = inputByJackson ? jackson.javaType(inputType) : null;
    }

    /**
     * The serializers of a handler whose input is {@code inputType} (null: no input). Jackson is
     * used when the function's class loader has it, except for types fleetfn's Json maps the AWS
     * way (String, Object, the AWS event classes).
     */
    static Serializers create(ClassLoader loader, Type inputType) throws ReflectiveOperationException {
        Jackson jackson = null;
        Class<?> mapperClass = null;
        try {
            mapperClass = Class.forName("com.fasterxml.jackson.databind.ObjectMapper", false, loader);
        } catch (ClassNotFoundException | LinkageError e) {
            // not bundled
        }
        if (mapperClass != null) {
            try {
                jackson = new Jackson(mapperClass, loader);
            } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
                Throwable cause = e instanceof InvocationTargetException ? e.getCause() : e;
                Logging.diagnostic("the function bundles Jackson but it could not be set up (" + cause
                        + "); using fleetfn's own JSON mapping");
                jackson = null;
            }
        }
        return new Serializers(inputType, jackson);
    }

    /** Whether Jackson is in use. */
    boolean usesJackson() {
        return jackson != null;
    }

    private static boolean ownJsonFits(Class<?> raw) {
        return raw == Object.class || raw == String.class || raw == CharSequence.class
                || raw.getName().startsWith(Json.EVENTS_PACKAGE);
    }

    /** The event mapped to the input type (the body is not empty). */
    Object read(byte[] event) throws Exception {
        if (inputByJackson) {
            return jackson.read(event, inputJavaType);
        }
        return Json.bind(Json.parse(event), inputType);
    }

    /** The result as JSON. */
    byte[] write(Object result) throws Exception {
        if (result == null) {
            return NULL;
        }
        if (jackson == null || result instanceof String || result instanceof Number || result instanceof Boolean
                || result.getClass().getName().startsWith(Json.EVENTS_PACKAGE)) {
            return Json.toBytes(result);
        }
        return jackson.write(result);
    }

    /** The function's own Jackson ObjectMapper, driven through reflection. */
    private static final class Jackson {
        private final Object mapper;
        private final Method readValue;
        private final Method writeValueAsBytes;
        private final Method constructType;
        private final Object typeFactory;

        Jackson(Class<?> mapperClass, ClassLoader loader) throws ReflectiveOperationException {
            mapper = mapperClass.getConstructor().newInstance();
            configure(loader, "com.fasterxml.jackson.databind.DeserializationFeature", "FAIL_ON_UNKNOWN_PROPERTIES",
                    true);
            configure(loader, "com.fasterxml.jackson.databind.SerializationFeature", "FAIL_ON_EMPTY_BEANS", false);
            Class<?> javaType = Class.forName("com.fasterxml.jackson.databind.JavaType", false, loader);
            readValue = mapperClass.getMethod("readValue", byte[].class, javaType);
            writeValueAsBytes = mapperClass.getMethod("writeValueAsBytes", Object.class);
            typeFactory = mapperClass.getMethod("getTypeFactory").invoke(mapper);
            constructType = typeFactory.getClass().getMethod("constructType", Type.class);
        }

        @SuppressWarnings({"unchecked", "rawtypes"})
        private void configure(ClassLoader loader, String enumClass, String constant, boolean required)
                throws ReflectiveOperationException {
            try {
                Class feature = Class.forName(enumClass, true, loader);
                Object value = Enum.valueOf(feature, constant);
                mapper.getClass().getMethod("configure", feature, boolean.class).invoke(mapper, value, false);
            } catch (ReflectiveOperationException | RuntimeException e) {
                if (required) {
                    throw e;
                }
            }
        }

        Object javaType(Type type) throws ReflectiveOperationException {
            return constructType.invoke(typeFactory, type);
        }

        Object read(byte[] event, Object javaType) throws Exception {
            return call(readValue, event, javaType);
        }

        byte[] write(Object value) throws Exception {
            return (byte[]) call(writeValueAsBytes, value, null);
        }

        private Object call(Method m, Object a, Object b) throws Exception {
            try {
                return b == null && m.getParameterCount() == 1 ? m.invoke(mapper, a) : m.invoke(mapper, a, b);
            } catch (InvocationTargetException e) {
                Throwable c = e.getCause();
                if (c instanceof Exception) {
                    throw (Exception) c;
                }
                if (c instanceof Error) {
                    throw (Error) c;
                }
                throw e;
            }
        }
    }
}
