// fleetfn Java runtime: JSON without libraries. Owns the parser (event bytes to
// Map/List/String/Number/Boolean/null), the writer (result objects to JSON text), the binder
// (parsed values to a handler's declared input type: scalars, enums, arrays, collections, maps,
// records, POJOs through setters or fields) and the generic-type helpers the handler adapter
// shares (raw classes, type-variable resolution).
package dev.fleetfn.runtime;

import java.lang.reflect.Array;
import java.lang.reflect.Constructor;
import java.lang.reflect.Executable;
import java.lang.reflect.Field;
import java.lang.reflect.GenericArrayType;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.lang.reflect.WildcardType;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collection;
import java.util.Date;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.NavigableMap;
import java.util.NavigableSet;
import java.util.Optional;
import java.util.Queue;
import java.util.Set;
import java.util.SortedMap;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;

final class Json {

    /** Output nested deeper than this is taken for a cycle. */
    static final int MAX_WRITE_DEPTH = 64;

    /** Input nested deeper than this is refused (keeps the recursive parser off the stack's end). */
    static final int MAX_PARSE_DEPTH = 1000;

    /** Packages whose classes follow the AWS event conventions (nulls left out on output). */
    static final String EVENTS_PACKAGE = "com.amazonaws.services.lambda.runtime.events";

    private Json() {
    }

    // =========================================================================================
    // Parsing

    /** Parses UTF-8 JSON text; throws IllegalArgumentException on malformed input. */
    static Object parse(byte[] data) {
        return parse(new String(data, StandardCharsets.UTF_8));
    }

    /** Parses JSON text; throws IllegalArgumentException on malformed input. */
    static Object parse(String text) {
        Parser p = new Parser(text);
        if (p.n > 0 && text.charAt(0) == '\uFEFF') {
            p.i = 1;
        }
        Object v = p.value(0);
        p.skipWs();
        if (p.i < p.n) {
            throw p.fail("unexpected text after the JSON value");
        }
        return v;
    }

    private static final class Parser {
        final String s;
        final int n;
        int i;

        Parser(String s) {
            this.s = s;
            this.n = s.length();
        }

        IllegalArgumentException fail(String what) {
            return new IllegalArgumentException("invalid JSON at offset " + i + ": " + what);
        }

        void skipWs() {
            while (i < n) {
                char c = s.charAt(i);
                if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                    i++;
                } else {
                    break;
                }
            }
        }

        Object value(int depth) {
            skipWs();
            if (i >= n) {
                throw fail("unexpected end of input");
            }
            char c = s.charAt(i);
            switch (c) {
                case '{':
                    return object(depth + 1);
                case '[':
                    return array(depth + 1);
                case '"':
                    return string();
                case 't':
                    literal("true");
                    return Boolean.TRUE;
                case 'f':
                    literal("false");
                    return Boolean.FALSE;
                case 'n':
                    literal("null");
                    return null;
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        return number();
                    }
                    throw fail("unexpected character '" + c + "'");
            }
        }

        void literal(String word) {
            if (!s.startsWith(word, i)) {
                throw fail("unexpected token");
            }
            i += word.length();
        }

        Map<String, Object> object(int depth) {
            if (depth > MAX_PARSE_DEPTH) {
                throw fail("nested too deeply");
            }
            i++;
            LinkedHashMap<String, Object> map = new LinkedHashMap<>();
            skipWs();
            if (i < n && s.charAt(i) == '}') {
                i++;
                return map;
            }
            for (;;) {
                skipWs();
                if (i >= n || s.charAt(i) != '"') {
                    throw fail("expected a string key");
                }
                String key = string();
                skipWs();
                if (i >= n || s.charAt(i) != ':') {
                    throw fail("expected ':'");
                }
                i++;
                map.put(key, value(depth));
                skipWs();
                if (i >= n) {
                    throw fail("unexpected end of input in an object");
                }
                char c = s.charAt(i++);
                if (c == '}') {
                    return map;
                }
                if (c != ',') {
                    i--;
                    throw fail("expected ',' or '}'");
                }
            }
        }

        List<Object> array(int depth) {
            if (depth > MAX_PARSE_DEPTH) {
                throw fail("nested too deeply");
            }
            i++;
            ArrayList<Object> list = new ArrayList<>();
            skipWs();
            if (i < n && s.charAt(i) == ']') {
                i++;
                return list;
            }
            for (;;) {
                list.add(value(depth));
                skipWs();
                if (i >= n) {
                    throw fail("unexpected end of input in an array");
                }
                char c = s.charAt(i++);
                if (c == ']') {
                    return list;
                }
                if (c != ',') {
                    i--;
                    throw fail("expected ',' or ']'");
                }
            }
        }

        String string() {
            int start = ++i;
            // Fast path: no escapes.
            while (i < n) {
                char c = s.charAt(i);
                if (c == '"') {
                    return s.substring(start, i++);
                }
                if (c == '\\') {
                    break;
                }
                if (c < 0x20) {
                    throw fail("control character in a string");
                }
                i++;
            }
            StringBuilder sb = new StringBuilder(i - start + 16);
            sb.append(s, start, i);
            while (i < n) {
                char c = s.charAt(i++);
                if (c == '"') {
                    return sb.toString();
                }
                if (c < 0x20) {
                    i--;
                    throw fail("control character in a string");
                }
                if (c != '\\') {
                    sb.append(c);
                    continue;
                }
                if (i >= n) {
                    break;
                }
                char e = s.charAt(i++);
                switch (e) {
                    case '"':
                        sb.append('"');
                        break;
                    case '\\':
                        sb.append('\\');
                        break;
                    case '/':
                        sb.append('/');
                        break;
                    case 'b':
                        sb.append('\b');
                        break;
                    case 'f':
                        sb.append('\f');
                        break;
                    case 'n':
                        sb.append('\n');
                        break;
                    case 'r':
                        sb.append('\r');
                        break;
                    case 't':
                        sb.append('\t');
                        break;
                    case 'u':
                        if (i + 4 > n) {
                            throw fail("truncated \\u escape");
                        }
                        int cp = 0;
                        for (int k = 0; k < 4; k++) {
                            int d = Character.digit(s.charAt(i + k), 16);
                            if (d < 0) {
                                throw fail("bad \\u escape");
                            }
                            cp = (cp << 4) | d;
                        }
                        i += 4;
                        sb.append((char) cp);
                        break;
                    default:
                        i--;
                        throw fail("bad escape '\\" + e + "'");
                }
            }
            throw fail("unterminated string");
        }

        Object number() {
            int start = i;
            if (s.charAt(i) == '-') {
                i++;
            }
            if (i >= n) {
                throw fail("bad number");
            }
            char c = s.charAt(i);
            if (c == '0') {
                i++;
            } else if (c >= '1' && c <= '9') {
                while (i < n && isDigit(s.charAt(i))) {
                    i++;
                }
            } else {
                throw fail("bad number");
            }
            boolean integral = true;
            if (i < n && s.charAt(i) == '.') {
                integral = false;
                i++;
                int digits = i;
                while (i < n && isDigit(s.charAt(i))) {
                    i++;
                }
                if (i == digits) {
                    throw fail("bad number: no digits after '.'");
                }
            }
            if (i < n && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
                integral = false;
                i++;
                if (i < n && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                    i++;
                }
                int digits = i;
                while (i < n && isDigit(s.charAt(i))) {
                    i++;
                }
                if (i == digits) {
                    throw fail("bad number: no digits in the exponent");
                }
            }
            String text = s.substring(start, i);
            if (!integral) {
                return Double.valueOf(text);
            }
            // Like Jackson: Integer when it fits, else Long, else BigInteger.
            if (text.length() <= 18) {
                long v = Long.parseLong(text);
                if (v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE) {
                    return Integer.valueOf((int) v);
                }
                return Long.valueOf(v);
            }
            BigInteger big = new BigInteger(text);
            if (big.bitLength() < 64) {
                return Long.valueOf(big.longValue());
            }
            return big;
        }

        private static boolean isDigit(char c) {
            return c >= '0' && c <= '9';
        }
    }

    // =========================================================================================
    // Writing

    /** Thrown for a value that cannot be written (NaN, a cycle, a getter that threw). */
    static final class WriteException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        WriteException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** The JSON text of {@code value} as UTF-8 bytes. */
    static byte[] toBytes(Object value) {
        return toJson(value).getBytes(StandardCharsets.UTF_8);
    }

    /** The JSON text of {@code value}. */
    static String toJson(Object value) {
        StringBuilder sb = new StringBuilder(64);
        write(sb, value, 0);
        return sb.toString();
    }

    /** Appends {@code s} as a JSON string literal. */
    static void quote(StringBuilder sb, String s) {
        sb.append('"');
        int n = s.length();
        int run = 0;
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            if (c >= 0x20 && c != '"' && c != '\\') {
                continue;
            }
            sb.append(s, run, i);
            run = i + 1;
            switch (c) {
                case '"':
                    sb.append("\\\"");
                    break;
                case '\\':
                    sb.append("\\\\");
                    break;
                case '\n':
                    sb.append("\\n");
                    break;
                case '\r':
                    sb.append("\\r");
                    break;
                case '\t':
                    sb.append("\\t");
                    break;
                case '\b':
                    sb.append("\\b");
                    break;
                case '\f':
                    sb.append("\\f");
                    break;
                default:
                    sb.append("\\u00");
                    sb.append(HEX[c >> 4]);
                    sb.append(HEX[c & 0xF]);
            }
        }
        sb.append(s, run, n);
        sb.append('"');
    }

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    private static void write(StringBuilder sb, Object v, int depth) {
        if (v == null) {
            sb.append("null");
            return;
        }
        if (v instanceof String) {
            quote(sb, (String) v);
            return;
        }
        if (v instanceof Boolean) {
            sb.append(((Boolean) v).booleanValue() ? "true" : "false");
            return;
        }
        if (v instanceof Number) {
            writeNumber(sb, (Number) v);
            return;
        }
        if (depth >= MAX_WRITE_DEPTH) {
            throw new WriteException("the result is nested deeper than " + MAX_WRITE_DEPTH
                    + " levels (a reference cycle?)", null);
        }
        if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                Object k = e.getKey();
                quote(sb, k instanceof Enum ? ((Enum<?>) k).name() : String.valueOf(k));
                sb.append(':');
                write(sb, e.getValue(), depth + 1);
            }
            sb.append('}');
            return;
        }
        if (v instanceof CharSequence || v instanceof Character) {
            quote(sb, v.toString());
            return;
        }
        if (v instanceof Enum) {
            quote(sb, ((Enum<?>) v).name());
            return;
        }
        if (v instanceof byte[]) {
            sb.append('"').append(Base64.getEncoder().encodeToString((byte[]) v)).append('"');
            return;
        }
        if (v instanceof char[]) {
            quote(sb, new String((char[]) v));
            return;
        }
        Class<?> cls = v.getClass();
        if (cls.isArray()) {
            sb.append('[');
            int len = Array.getLength(v);
            for (int i = 0; i < len; i++) {
                if (i > 0) {
                    sb.append(',');
                }
                write(sb, Array.get(v, i), depth + 1);
            }
            sb.append(']');
            return;
        }
        if (isStringLike(v)) {
            quote(sb, v.toString());
            return;
        }
        if (v instanceof java.util.TimeZone) {
            quote(sb, ((java.util.TimeZone) v).getID());
            return;
        }
        if (v instanceof Iterable) {
            sb.append('[');
            boolean first = true;
            for (Object item : (Iterable<?>) v) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                write(sb, item, depth + 1);
            }
            sb.append(']');
            return;
        }
        if (v instanceof Optional) {
            write(sb, ((Optional<?>) v).orElse(null), depth + 1);
            return;
        }
        if (v instanceof Date) {
            sb.append(((Date) v).getTime());
            return;
        }
        if (v instanceof java.util.Calendar) {
            sb.append(((java.util.Calendar) v).getTimeInMillis());
            return;
        }
        if (cls.isRecord()) {
            writeRecord(sb, v, cls, depth);
            return;
        }
        writeBean(sb, v, cls, depth);
    }

    /** Values written as their toString() text: time values, ids, names. */
    private static boolean isStringLike(Object v) {
        return v instanceof java.time.temporal.TemporalAccessor
                || v instanceof java.time.temporal.TemporalAmount
                || v instanceof UUID
                || v instanceof java.net.URI
                || v instanceof java.net.URL
                || v instanceof java.nio.file.Path
                || v instanceof java.io.File
                || v instanceof Locale
                || v instanceof java.util.Currency
                || v instanceof java.nio.charset.Charset
                || v instanceof java.util.regex.Pattern
                || v instanceof java.time.ZoneId;
    }

    private static void writeNumber(StringBuilder sb, Number num) {
        if (num instanceof Double || num instanceof Float) {
            double d = num.doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                throw new WriteException("the result holds " + num + ", which JSON cannot represent", null);
            }
            sb.append(num.toString());
            return;
        }
        sb.append(num.toString());
    }

    private static void writeRecord(StringBuilder sb, Object v, Class<?> cls, int depth) {
        sb.append('{');
        boolean first = true;
        for (RecordComponent rc : cls.getRecordComponents()) {
            Object value;
            try {
                Method m = rc.getAccessor();
                m.trySetAccessible();
                value = m.invoke(v);
            } catch (InvocationTargetException e) {
                throw new WriteException("accessor " + cls.getName() + "." + rc.getName() + "() threw "
                        + e.getCause(), e.getCause());
            } catch (ReflectiveOperationException | RuntimeException e) {
                throw new WriteException("cannot read " + cls.getName() + "." + rc.getName() + ": " + e, e);
            }
            if (!first) {
                sb.append(',');
            }
            first = false;
            quote(sb, rc.getName());
            sb.append(':');
            write(sb, value, depth + 1);
        }
        sb.append('}');
    }

    private static void writeBean(StringBuilder sb, Object v, Class<?> cls, int depth) {
        Bean bean = BEANS.get(cls);
        sb.append('{');
        boolean first = true;
        for (Reader r : bean.readers) {
            Object value;
            try {
                value = r.read(v);
            } catch (InvocationTargetException e) {
                throw new WriteException("getter of " + cls.getName() + "." + r.name + " threw " + e.getCause(),
                        e.getCause());
            } catch (ReflectiveOperationException | RuntimeException e) {
                throw new WriteException("cannot read " + cls.getName() + "." + r.name + ": " + e, e);
            }
            if (value == null && bean.omitNulls) {
                continue;
            }
            if (!first) {
                sb.append(',');
            }
            first = false;
            quote(sb, r.name);
            sb.append(':');
            write(sb, value, depth + 1);
        }
        sb.append('}');
    }

    // =========================================================================================
    // Binding parsed values to Java types

    /** A binding failure somewhere inside the value; the path is built while unwinding. */
    private static final class BindError extends RuntimeException {
        private static final long serialVersionUID = 1L;
        String path = "";

        BindError(String message, Throwable cause) {
            super(message, cause, false, false);
        }

        BindError at(String segment) {
            path = segment + path;
            return this;
        }
    }

    /**
     * Binds a parsed JSON value to {@code type}. Throws IllegalArgumentException naming the
     * place in the event that did not fit.
     */
    static Object bind(Object parsed, Type type) {
        try {
            return bindValue(parsed, type);
        } catch (BindError e) {
            String where = e.path.isEmpty() ? "" : " at $" + e.path;
            throw new IllegalArgumentException(e.getMessage() + where, e.getCause());
        }
    }

    private static BindError mismatch(Object v, Type type) {
        return new BindError("cannot map JSON " + kind(v) + " to " + type.getTypeName(), null);
    }

    private static String kind(Object v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof String) {
            String s = (String) v;
            return "string \"" + (s.length() > 40 ? s.substring(0, 40) + "..." : s) + "\"";
        }
        if (v instanceof Boolean) {
            return "boolean " + v;
        }
        if (v instanceof Number) {
            return "number " + v;
        }
        if (v instanceof Map) {
            return "object";
        }
        if (v instanceof List) {
            return "array";
        }
        return v.getClass().getName();
    }

    private static Object bindValue(Object v, Type type) {
        Class<?> raw = rawClass(type);
        if (raw == Object.class) {
            return v;
        }
        if (v == null) {
            if (raw.isPrimitive()) {
                return defaultValue(raw);
            }
            return raw == Optional.class ? Optional.empty() : null;
        }
        if (raw == String.class || raw == CharSequence.class) {
            return v instanceof String ? v : toJson(v);
        }
        if (raw.isPrimitive() || Number.class.isAssignableFrom(raw) || raw == Boolean.class
                || raw == Character.class) {
            return bindScalar(v, raw, type);
        }
        if (raw.isEnum()) {
            return bindEnum(v, raw, type);
        }
        if (raw == byte[].class) {
            if (v instanceof String) {
                try {
                    return Base64.getMimeDecoder().decode((String) v);
                } catch (IllegalArgumentException e) {
                    throw new BindError("cannot map JSON string to byte[]: not base64 (" + e.getMessage() + ")", null);
                }
            }
        }
        if (raw.isArray()) {
            if (!(v instanceof List)) {
                throw mismatch(v, type);
            }
            List<?> list = (List<?>) v;
            Type componentType = type instanceof GenericArrayType
                    ? ((GenericArrayType) type).getGenericComponentType()
                    : raw.getComponentType();
            Object array = Array.newInstance(raw.getComponentType(), list.size());
            for (int i = 0; i < list.size(); i++) {
                try {
                    Array.set(array, i, bindValue(list.get(i), componentType));
                } catch (BindError e) {
                    throw e.at("[" + i + "]");
                }
            }
            return array;
        }
        if (raw == Optional.class) {
            return Optional.ofNullable(bindValue(v, typeArgument(type, Optional.class, 0)));
        }
        if (Collection.class.isAssignableFrom(raw) || raw == Iterable.class) {
            if (!(v instanceof List)) {
                throw mismatch(v, type);
            }
            Type elementType = raw == Iterable.class
                    ? typeArgument(type, Iterable.class, 0)
                    : typeArgument(type, Collection.class, 0);
            @SuppressWarnings("unchecked")
            Collection<Object> out = (Collection<Object>) newCollection(raw, type);
            int i = 0;
            for (Object item : (List<?>) v) {
                try {
                    out.add(bindValue(item, elementType));
                } catch (BindError e) {
                    throw e.at("[" + i + "]");
                }
                i++;
            }
            return out;
        }
        if (Map.class.isAssignableFrom(raw)) {
            if (!(v instanceof Map)) {
                throw mismatch(v, type);
            }
            Type keyType = typeArgument(type, Map.class, 0);
            Type valueType = typeArgument(type, Map.class, 1);
            Class<?> keyRaw = rawClass(keyType);
            @SuppressWarnings("unchecked")
            Map<Object, Object> out = (Map<Object, Object>) newMap(raw, type);
            boolean noNulls = out instanceof ConcurrentMap;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                String k = (String) e.getKey();
                try {
                    Object key = keyRaw == String.class || keyRaw == Object.class || keyRaw == CharSequence.class
                            ? k : bindValue(k, keyType);
                    Object value = bindValue(e.getValue(), valueType);
                    if (value != null || !noNulls) {
                        out.put(key, value);
                    }
                } catch (BindError err) {
                    throw err.at("." + k);
                }
            }
            return out;
        }
        if (raw == Date.class) {
            if (v instanceof Number) {
                return new Date(((Number) v).longValue());
            }
            if (v instanceof String) {
                try {
                    return Date.from(java.time.Instant.parse((String) v));
                } catch (RuntimeException e) {
                    throw new BindError("cannot map JSON " + kind(v) + " to java.util.Date: " + e.getMessage(), null);
                }
            }
            throw mismatch(v, type);
        }
        Bean bean = BEANS.get(raw);
        if (v instanceof String && bean.fromString != null) {
            return fromString(bean.fromString, (String) v, type);
        }
        if (raw.isRecord()) {
            if (!(v instanceof Map)) {
                throw mismatch(v, type);
            }
            return bindRecord((Map<?, ?>) v, raw, type);
        }
        if (raw.isInterface() || Modifier.isAbstract(raw.getModifiers())) {
            throw new BindError("cannot map JSON " + kind(v) + " to " + type.getTypeName()
                    + ": it is an interface or abstract class", null);
        }
        if (!(v instanceof Map)) {
            throw mismatch(v, type);
        }
        return bindBean((Map<?, ?>) v, raw, type, bean);
    }

    private static Object fromString(Executable factory, String s, Type type) {
        try {
            if (factory instanceof Method) {
                return ((Method) factory).invoke(null, s);
            }
            return ((Constructor<?>) factory).newInstance(s);
        } catch (InvocationTargetException e) {
            Throwable c = e.getCause();
            throw new BindError("cannot map JSON string \"" + s + "\" to " + type.getTypeName() + ": " + c, c);
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new BindError("cannot map JSON string to " + type.getTypeName() + ": " + e, e);
        }
    }

    private static Object bindRecord(Map<?, ?> map, Class<?> raw, Type type) {
        RecordComponent[] rcs = raw.getRecordComponents();
        Class<?>[] types = new Class<?>[rcs.length];
        Object[] args = new Object[rcs.length];
        Map<TypeVariable<?>, Type> vars = null;
        for (int i = 0; i < rcs.length; i++) {
            RecordComponent rc = rcs[i];
            types[i] = rc.getType();
            Object value = lookup(map, rc.getName());
            Type t = rc.getGenericType();
            if (!(t instanceof Class)) {
                if (vars == null) {
                    vars = typeBindings(type);
                }
                t = resolve(t, vars);
            }
            try {
                args[i] = bindValue(value, t);
            } catch (BindError e) {
                throw e.at("." + rc.getName());
            }
        }
        try {
            Constructor<?> c = raw.getDeclaredConstructor(types);
            c.trySetAccessible();
            return c.newInstance(args);
        } catch (InvocationTargetException e) {
            throw new BindError("constructor of " + raw.getName() + " threw " + e.getCause(), e.getCause());
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new BindError("cannot create " + raw.getName() + ": " + e, e);
        }
    }

    /** The map's value for a property: exact name, then any case, then loosely normalized. */
    private static Object lookup(Map<?, ?> map, String name) {
        if (map.containsKey(name)) {
            return map.get(name);
        }
        for (Map.Entry<?, ?> e : map.entrySet()) {
            if (name.equalsIgnoreCase((String) e.getKey())) {
                return e.getValue();
            }
        }
        String norm = normalize(name);
        for (Map.Entry<?, ?> e : map.entrySet()) {
            if (norm.equals(normalize((String) e.getKey()))) {
                return e.getValue();
            }
        }
        return null;
    }

    private static Object bindBean(Map<?, ?> map, Class<?> raw, Type type, Bean bean) {
        if (bean.constructor == null) {
            throw new BindError("cannot create " + raw.getName() + ": it has no no-argument constructor", null);
        }
        Object target;
        try {
            target = bean.constructor.newInstance();
        } catch (InvocationTargetException e) {
            throw new BindError("constructor of " + raw.getName() + " threw " + e.getCause(), e.getCause());
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new BindError("cannot create " + raw.getName() + ": " + e, e);
        }
        Map<TypeVariable<?>, Type> vars = null;
        for (Map.Entry<?, ?> e : map.entrySet()) {
            String key = (String) e.getKey();
            Writer w = bean.writer(key);
            if (w == null) {
                continue;
            }
            Object value = e.getValue();
            try {
                Method setter = w.pickSetter(value);
                Type t = setter != null ? setter.getGenericParameterTypes()[0] : w.field.getGenericType();
                if (!(t instanceof Class)) {
                    if (vars == null) {
                        vars = typeBindings(type);
                    }
                    t = resolve(t, vars);
                }
                Object bound = bindValue(value, t);
                if (setter != null) {
                    setter.invoke(target, bound);
                } else {
                    w.field.set(target, bound);
                }
            } catch (BindError err) {
                throw err.at("." + key);
            } catch (InvocationTargetException ite) {
                throw new BindError("setter of " + raw.getName() + "." + w.name + " threw " + ite.getCause(),
                        ite.getCause()).at("." + key);
            } catch (ReflectiveOperationException | RuntimeException ex) {
                throw new BindError("cannot set " + raw.getName() + "." + w.name + ": " + ex, ex).at("." + key);
            }
        }
        return target;
    }

    private static Object bindEnum(Object v, Class<?> raw, Type type) {
        Object[] constants = raw.getEnumConstants();
        if (v instanceof String) {
            String s = (String) v;
            for (Object c : constants) {
                if (((Enum<?>) c).name().equals(s)) {
                    return c;
                }
            }
            for (Object c : constants) {
                if (((Enum<?>) c).name().equalsIgnoreCase(s)) {
                    return c;
                }
            }
            throw new BindError("cannot map JSON " + kind(v) + " to " + type.getTypeName() + ": not one of "
                    + Arrays.toString(constants), null);
        }
        if (v instanceof Integer || v instanceof Long) {
            long ordinal = ((Number) v).longValue();
            if (ordinal >= 0 && ordinal < constants.length) {
                return constants[(int) ordinal];
            }
        }
        throw mismatch(v, type);
    }

    private static Object bindScalar(Object v, Class<?> raw, Type type) {
        if (raw == boolean.class || raw == Boolean.class) {
            if (v instanceof Boolean) {
                return v;
            }
            if ("true".equals(v)) {
                return Boolean.TRUE;
            }
            if ("false".equals(v)) {
                return Boolean.FALSE;
            }
            throw mismatch(v, type);
        }
        if (raw == char.class || raw == Character.class) {
            if (v instanceof String && ((String) v).length() == 1) {
                return Character.valueOf(((String) v).charAt(0));
            }
            throw mismatch(v, type);
        }
        Number num;
        if (v instanceof Number) {
            num = (Number) v;
        } else if (v instanceof String) {
            String s = ((String) v).trim();
            try {
                num = new BigDecimal(s);
            } catch (NumberFormatException e) {
                if (raw == double.class || raw == Double.class || raw == float.class || raw == Float.class) {
                    if (s.equals("NaN")) {
                        return raw == float.class || raw == Float.class ? (Object) Float.NaN : (Object) Double.NaN;
                    }
                }
                throw mismatch(v, type);
            }
        } else {
            throw mismatch(v, type);
        }
        if (raw == Number.class) {
            return num;
        }
        if (raw == double.class || raw == Double.class) {
            return Double.valueOf(num.doubleValue());
        }
        if (raw == float.class || raw == Float.class) {
            return Float.valueOf(num.floatValue());
        }
        if (raw == BigDecimal.class) {
            return num instanceof BigDecimal ? num : new BigDecimal(num.toString());
        }
        BigInteger integral = toBigInteger(num);
        if (integral == null) {
            throw mismatch(v, type);
        }
        if (raw == BigInteger.class) {
            return integral;
        }
        long min;
        long max;
        if (raw == int.class || raw == Integer.class) {
            min = Integer.MIN_VALUE;
            max = Integer.MAX_VALUE;
        } else if (raw == long.class || raw == Long.class) {
            min = Long.MIN_VALUE;
            max = Long.MAX_VALUE;
        } else if (raw == short.class || raw == Short.class) {
            min = Short.MIN_VALUE;
            max = Short.MAX_VALUE;
        } else if (raw == byte.class || raw == Byte.class) {
            min = Byte.MIN_VALUE;
            max = Byte.MAX_VALUE;
        } else {
            throw mismatch(v, type);
        }
        if (integral.bitLength() >= 64 || integral.longValue() < min || integral.longValue() > max) {
            throw new BindError("cannot map JSON " + kind(v) + " to " + type.getTypeName() + ": out of range", null);
        }
        long l = integral.longValue();
        if (raw == int.class || raw == Integer.class) {
            return Integer.valueOf((int) l);
        }
        if (raw == long.class || raw == Long.class) {
            return Long.valueOf(l);
        }
        if (raw == short.class || raw == Short.class) {
            return Short.valueOf((short) l);
        }
        return Byte.valueOf((byte) l);
    }

    /** The integral value of a number; fractions are truncated (as Jackson does). */
    private static BigInteger toBigInteger(Number num) {
        if (num instanceof Integer || num instanceof Long || num instanceof Short || num instanceof Byte) {
            return BigInteger.valueOf(num.longValue());
        }
        if (num instanceof BigInteger) {
            return (BigInteger) num;
        }
        if (num instanceof BigDecimal) {
            return ((BigDecimal) num).toBigInteger();
        }
        double d = num.doubleValue();
        if (Double.isNaN(d) || Double.isInfinite(d)) {
            return null;
        }
        return new BigDecimal(d).toBigInteger();
    }

    private static Object defaultValue(Class<?> primitive) {
        if (primitive == boolean.class) {
            return Boolean.FALSE;
        }
        if (primitive == char.class) {
            return Character.valueOf('\0');
        }
        if (primitive == int.class) {
            return Integer.valueOf(0);
        }
        if (primitive == long.class) {
            return Long.valueOf(0);
        }
        if (primitive == double.class) {
            return Double.valueOf(0);
        }
        if (primitive == float.class) {
            return Float.valueOf(0);
        }
        if (primitive == short.class) {
            return Short.valueOf((short) 0);
        }
        if (primitive == byte.class) {
            return Byte.valueOf((byte) 0);
        }
        return null;
    }

    /** The default value of a primitive type (null for reference types). */
    static Object defaultFor(Class<?> type) {
        return type.isPrimitive() ? defaultValue(type) : null;
    }

    private static Collection<?> newCollection(Class<?> raw, Type type) {
        if (raw.isInterface() || Modifier.isAbstract(raw.getModifiers())) {
            if (SortedSet.class.isAssignableFrom(raw) || NavigableSet.class.isAssignableFrom(raw)) {
                return new TreeSet<Object>();
            }
            if (Set.class.isAssignableFrom(raw)) {
                return new LinkedHashSet<Object>();
            }
            if (Queue.class.isAssignableFrom(raw) && !List.class.isAssignableFrom(raw)) {
                return new ArrayDeque<Object>();
            }
            if (raw.isAssignableFrom(ArrayList.class)) {
                return new ArrayList<Object>();
            }
            throw new BindError("cannot create a collection of type " + type.getTypeName(), null);
        }
        try {
            Constructor<?> c = raw.getDeclaredConstructor();
            c.trySetAccessible();
            return (Collection<?>) c.newInstance();
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new BindError("cannot create a collection of type " + type.getTypeName() + ": " + e, e);
        }
    }

    private static Map<?, ?> newMap(Class<?> raw, Type type) {
        if (raw.isInterface() || Modifier.isAbstract(raw.getModifiers())) {
            if (ConcurrentMap.class.isAssignableFrom(raw)) {
                return new ConcurrentHashMap<Object, Object>();
            }
            if (SortedMap.class.isAssignableFrom(raw) || NavigableMap.class.isAssignableFrom(raw)) {
                return new TreeMap<Object, Object>();
            }
            if (raw.isAssignableFrom(LinkedHashMap.class)) {
                return new LinkedHashMap<Object, Object>();
            }
            throw new BindError("cannot create a map of type " + type.getTypeName(), null);
        }
        try {
            Constructor<?> c = raw.getDeclaredConstructor();
            c.trySetAccessible();
            return (Map<?, ?>) c.newInstance();
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new BindError("cannot create a map of type " + type.getTypeName() + ": " + e, e);
        }
    }

    // =========================================================================================
    // Class metadata (cached per class)

    private static final ClassValue<Bean> BEANS = new ClassValue<Bean>() {
        @Override
        protected Bean computeValue(Class<?> type) {
            return new Bean(type);
        }
    };

    /** How to read a property for output. */
    private static final class Reader {
        final String name;
        final Method getter;
        final Field field;

        Reader(String name, Method getter, Field field) {
            this.name = name;
            this.getter = getter;
            this.field = field;
        }

        Object read(Object target) throws ReflectiveOperationException {
            return getter != null ? getter.invoke(target) : field.get(target);
        }
    }

    /** How to set a property from input: setters (overloads) or a field. */
    private static final class Writer {
        final String name;
        final List<Method> setters = new ArrayList<>(1);
        Field field;

        Writer(String name) {
            this.name = name;
        }

        /** The setter whose parameter suits the JSON value best; null means use the field. */
        Method pickSetter(Object value) {
            int n = setters.size();
            if (n == 0) {
                return null;
            }
            if (n == 1) {
                return setters.get(0);
            }
            Method best = setters.get(0);
            int bestScore = -1;
            for (Method m : setters) {
                int score = suitability(m.getParameterTypes()[0], value);
                if (score > bestScore) {
                    best = m;
                    bestScore = score;
                }
            }
            return best;
        }

        private static int suitability(Class<?> p, Object v) {
            if (v == null) {
                return p.isPrimitive() ? 0 : 2;
            }
            if (v instanceof String) {
                return p == String.class ? 3 : p.isEnum() ? 2 : p == Object.class ? 1 : 0;
            }
            if (v instanceof Number) {
                return p.isPrimitive() && p != boolean.class || Number.class.isAssignableFrom(p) ? 3
                        : p == Object.class ? 1 : 0;
            }
            if (v instanceof Boolean) {
                return p == boolean.class || p == Boolean.class ? 3 : p == Object.class ? 1 : 0;
            }
            if (v instanceof List) {
                return p.isArray() || Collection.class.isAssignableFrom(p) ? 3 : p == Object.class ? 1 : 0;
            }
            // An object.
            if (p == Object.class) {
                return 1;
            }
            return p.isPrimitive() || p == String.class || Number.class.isAssignableFrom(p)
                    || Collection.class.isAssignableFrom(p) || p.isArray() ? 0 : 3;
        }
    }

    private static final class Bean {
        final Reader[] readers;
        final Map<String, Writer> writers = new HashMap<>();
        final Map<String, Writer> writersLower = new HashMap<>();
        final Map<String, Writer> writersLoose = new HashMap<>();
        final Constructor<?> constructor;
        final Executable fromString;
        final boolean omitNulls;

        Bean(Class<?> cls) {
            omitNulls = cls.getName().startsWith(EVENTS_PACKAGE);
            Method[] methods = cls.getMethods();
            LinkedHashMap<String, Reader> readerMap = new LinkedHashMap<>();
            for (Method m : methods) {
                if (Modifier.isStatic(m.getModifiers()) || m.isBridge() || m.isSynthetic()
                        || m.getDeclaringClass() == Object.class) {
                    continue;
                }
                String n = m.getName();
                int pc = m.getParameterCount();
                if (pc == 0 && m.getReturnType() != void.class) {
                    String prop = null;
                    if (n.length() > 3 && n.startsWith("get")) {
                        prop = decapitalize(n.substring(3));
                    } else if (n.length() > 2 && n.startsWith("is")
                            && (m.getReturnType() == boolean.class || m.getReturnType() == Boolean.class)) {
                        prop = decapitalize(n.substring(2));
                        if (readerMap.containsKey(prop)) {
                            continue; // getX wins over isX
                        }
                    }
                    if (prop != null) {
                        Reader old = readerMap.get(prop);
                        if (old == null || old.getter.getName().startsWith("is")) {
                            m.trySetAccessible();
                            readerMap.put(prop, new Reader(prop, m, null));
                        }
                    }
                } else if (pc == 1 && n.length() > 3 && n.startsWith("set")) {
                    String prop = decapitalize(n.substring(3));
                    Writer w = writers.get(prop);
                    if (w == null) {
                        w = new Writer(prop);
                        writers.put(prop, w);
                    }
                    m.trySetAccessible();
                    w.setters.add(m);
                }
            }
            for (Field f : cls.getFields()) {
                int mod = f.getModifiers();
                if (Modifier.isStatic(mod) || Modifier.isTransient(mod)) {
                    continue;
                }
                String prop = f.getName();
                if (!readerMap.containsKey(prop)) {
                    f.trySetAccessible();
                    readerMap.put(prop, new Reader(prop, null, f));
                }
                if (!Modifier.isFinal(mod) && !writers.containsKey(prop)) {
                    Writer w = new Writer(prop);
                    f.trySetAccessible();
                    w.field = f;
                    writers.put(prop, w);
                }
            }
            // A property with a public getter but no setter is set through its private field
            // (as Jackson does).
            List<Field> declared = declaredFields(cls);
            for (Field f : declared) {
                String prop = f.getName();
                int mod = f.getModifiers();
                if (readerMap.containsKey(prop) && !writers.containsKey(prop) && !Modifier.isFinal(mod)
                        && !Modifier.isTransient(mod) && f.trySetAccessible()) {
                    Writer w = new Writer(prop);
                    w.field = f;
                    writers.put(prop, w);
                }
            }
            for (Writer w : writers.values()) {
                writersLower.putIfAbsent(w.name.toLowerCase(Locale.ROOT), w);
                writersLoose.putIfAbsent(normalize(w.name), w);
            }
            readers = orderReaders(readerMap, declared);
            constructor = findConstructor(cls);
            fromString = findFromString(cls);
        }

        Writer writer(String key) {
            Writer w = writers.get(key);
            if (w == null) {
                w = writersLower.get(key.toLowerCase(Locale.ROOT));
                if (w == null) {
                    w = writersLoose.get(normalize(key));
                }
            }
            return w;
        }

        /** Properties in field declaration order (superclass first), then the rest by name. */
        private static Reader[] orderReaders(LinkedHashMap<String, Reader> map, List<Field> declared) {
            ArrayList<Reader> out = new ArrayList<>(map.size());
            HashSet<String> done = new HashSet<>();
            for (Field f : declared) {
                Reader r = map.get(f.getName());
                if (r != null && done.add(r.name)) {
                    out.add(r);
                }
            }
            ArrayList<String> rest = new ArrayList<>();
            for (String name : map.keySet()) {
                if (!done.contains(name)) {
                    rest.add(name);
                }
            }
            java.util.Collections.sort(rest);
            for (String name : rest) {
                out.add(map.get(name));
            }
            return out.toArray(new Reader[0]);
        }

        private static List<Field> declaredFields(Class<?> cls) {
            ArrayList<Class<?>> chain = new ArrayList<>();
            for (Class<?> c = cls; c != null && c != Object.class; c = c.getSuperclass()) {
                chain.add(0, c);
            }
            ArrayList<Field> out = new ArrayList<>();
            for (Class<?> c : chain) {
                try {
                    for (Field f : c.getDeclaredFields()) {
                        if (!Modifier.isStatic(f.getModifiers()) && !f.isSynthetic()) {
                            out.add(f);
                        }
                    }
                } catch (SecurityException | LinkageError e) {
                    // leave this class's fields out
                }
            }
            return out;
        }

        private static Constructor<?> findConstructor(Class<?> cls) {
            if (cls.isInterface() || Modifier.isAbstract(cls.getModifiers()) || cls.isArray() || cls.isPrimitive()) {
                return null;
            }
            if (cls.getEnclosingClass() != null && !Modifier.isStatic(cls.getModifiers())) {
                return null; // inner (non-static) class
            }
            try {
                Constructor<?> c = cls.getDeclaredConstructor();
                return c.trySetAccessible() || Modifier.isPublic(c.getModifiers()) ? c : null;
            } catch (NoSuchMethodException | SecurityException e) {
                return null;
            }
        }

        /** A public static parse/valueOf/fromString/of(String) or a public (String) constructor. */
        private static Executable findFromString(Class<?> cls) {
            if (cls.isInterface() || cls.isArray() || cls.isPrimitive()) {
                return null;
            }
            String[] names = {"fromString", "parse", "valueOf", "of"};
            for (String name : names) {
                for (Class<?> param : new Class<?>[] {String.class, CharSequence.class}) {
                    try {
                        Method m = cls.getMethod(name, param);
                        if (Modifier.isStatic(m.getModifiers()) && cls.isAssignableFrom(m.getReturnType())) {
                            return m;
                        }
                    } catch (NoSuchMethodException | SecurityException e) {
                        // next
                    }
                }
            }
            if (Modifier.isAbstract(cls.getModifiers())) {
                return null;
            }
            try {
                return cls.getConstructor(String.class);
            } catch (NoSuchMethodException | SecurityException e) {
                return null;
            }
        }
    }

    /** Java Beans decapitalization: "Name" → "name", "URL" → "URL". */
    static String decapitalize(String s) {
        if (s.isEmpty()) {
            return s;
        }
        if (s.length() > 1 && Character.isUpperCase(s.charAt(1)) && Character.isUpperCase(s.charAt(0))) {
            return s;
        }
        char c = s.charAt(0);
        if (Character.isLowerCase(c)) {
            return s;
        }
        return Character.toLowerCase(c) + s.substring(1);
    }

    /** Lower case without '-', '_' and a leading "is" ("detail-type" → "detailtype"). */
    private static String normalize(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c != '-' && c != '_') {
                sb.append(Character.toLowerCase(c));
            }
        }
        if (sb.length() > 2 && sb.charAt(0) == 'i' && sb.charAt(1) == 's') {
            return sb.substring(2);
        }
        return sb.toString();
    }

    // =========================================================================================
    // Generic types

    /** The class a type erases to (Object for an unresolvable variable). */
    static Class<?> rawClass(Type type) {
        if (type instanceof Class) {
            return (Class<?>) type;
        }
        if (type instanceof ParameterizedType) {
            return rawClass(((ParameterizedType) type).getRawType());
        }
        if (type instanceof GenericArrayType) {
            Class<?> component = rawClass(((GenericArrayType) type).getGenericComponentType());
            return Array.newInstance(component, 0).getClass();
        }
        if (type instanceof WildcardType) {
            Type[] upper = ((WildcardType) type).getUpperBounds();
            return upper.length > 0 ? rawClass(upper[0]) : Object.class;
        }
        if (type instanceof TypeVariable) {
            Type[] bounds = ((TypeVariable<?>) type).getBounds();
            return bounds.length > 0 ? rawClass(bounds[0]) : Object.class;
        }
        return Object.class;
    }

    /**
     * The type variables bound along {@code type}'s superclasses and interfaces, e.g. for
     * {@code class H implements RequestHandler<Req, Resp>} the variable I of RequestHandler maps to Req.
     */
    static Map<TypeVariable<?>, Type> typeBindings(Type type) {
        HashMap<TypeVariable<?>, Type> map = new HashMap<>();
        collectBindings(type, map, new HashSet<Class<?>>());
        return map;
    }

    private static void collectBindings(Type type, Map<TypeVariable<?>, Type> map, Set<Class<?>> seen) {
        Class<?> raw = rawClass(type);
        if (type instanceof ParameterizedType) {
            TypeVariable<?>[] vars = raw.getTypeParameters();
            Type[] args = ((ParameterizedType) type).getActualTypeArguments();
            for (int i = 0; i < vars.length && i < args.length; i++) {
                map.put(vars[i], resolve(args[i], map));
            }
        }
        if (raw == Object.class || !seen.add(raw)) {
            return;
        }
        Type sup = raw.getGenericSuperclass();
        if (sup != null) {
            collectBindings(sup, map, seen);
        }
        for (Type itf : raw.getGenericInterfaces()) {
            collectBindings(itf, map, seen);
        }
    }

    /** {@code type} with the variables of {@code vars} substituted. */
    static Type resolve(Type type, Map<TypeVariable<?>, Type> vars) {
        if (type instanceof Class) {
            return type;
        }
        if (type instanceof TypeVariable) {
            Type bound = vars.get(type);
            if (bound != null) {
                return bound;
            }
            return rawClass(type);
        }
        if (type instanceof ParameterizedType) {
            ParameterizedType p = (ParameterizedType) type;
            Type[] args = p.getActualTypeArguments();
            Type[] resolved = new Type[args.length];
            boolean changed = false;
            for (int i = 0; i < args.length; i++) {
                resolved[i] = resolve(args[i], vars);
                changed |= resolved[i] != args[i];
            }
            return changed ? new Parameterized(p.getRawType(), resolved, p.getOwnerType()) : p;
        }
        if (type instanceof GenericArrayType) {
            Type component = resolve(((GenericArrayType) type).getGenericComponentType(), vars);
            if (component instanceof Class) {
                return Array.newInstance((Class<?>) component, 0).getClass();
            }
            return type;
        }
        if (type instanceof WildcardType) {
            Type[] upper = ((WildcardType) type).getUpperBounds();
            return upper.length > 0 ? resolve(upper[0], vars) : Object.class;
        }
        return type;
    }

    /** The {@code index}th type argument {@code type} gives to its supertype {@code target}. */
    static Type typeArgument(Type type, Class<?> target, int index) {
        if (type instanceof ParameterizedType && rawClass(type) == target) {
            Type[] args = ((ParameterizedType) type).getActualTypeArguments();
            if (index < args.length) {
                Type a = args[index];
                return a instanceof WildcardType || a instanceof TypeVariable ? resolve(a, new HashMap<>()) : a;
            }
        }
        if (type instanceof Class && ((Class<?>) type).getTypeParameters().length > 0
                && rawClass(type) == target) {
            return Object.class;
        }
        Map<TypeVariable<?>, Type> vars = typeBindings(type);
        TypeVariable<?>[] params = target.getTypeParameters();
        if (index >= params.length) {
            return Object.class;
        }
        Type t = vars.get(params[index]);
        if (t == null || t instanceof TypeVariable) {
            return t == null ? Object.class : rawClass(t);
        }
        return t;
    }

    /** A parameterized type built by {@link #resolve}. */
    static final class Parameterized implements ParameterizedType {
        private final Type raw;
        private final Type[] args;
        private final Type owner;

        Parameterized(Type raw, Type[] args, Type owner) {
            this.raw = raw;
            this.args = args;
            this.owner = owner;
        }

        @Override
        public Type[] getActualTypeArguments() {
            return args.clone();
        }

        @Override
        public Type getRawType() {
            return raw;
        }

        @Override
        public Type getOwnerType() {
            return owner;
        }

        @Override
        public boolean equals(Object o) {
            if (!(o instanceof ParameterizedType)) {
                return false;
            }
            ParameterizedType p = (ParameterizedType) o;
            return raw.equals(p.getRawType()) && Arrays.equals(args, p.getActualTypeArguments())
                    && java.util.Objects.equals(owner, p.getOwnerType());
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(args) ^ raw.hashCode() ^ java.util.Objects.hashCode(owner);
        }

        @Override
        public String toString() {
            StringBuilder sb = new StringBuilder(raw.getTypeName()).append('<');
            for (int i = 0; i < args.length; i++) {
                if (i > 0) {
                    sb.append(", ");
                }
                sb.append(args[i].getTypeName());
            }
            return sb.append('>').toString();
        }
    }
}
