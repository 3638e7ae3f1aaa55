// A complete exchange with an LGSP hub, with nothing but the JDK 17 standard library
// (java.net.http, javax.crypto.Mac, MessageDigest).
//
// The destination opens its event stream (a WebSocket whose upgrade request is signed like any
// request), the source creates a packet and uploads its content, then the destination hears of it,
// finds it in its inbox, asks `ready`, downloads it, checks its SHA-256 and acknowledges it. One
// line per step; any failure exits with status 1.
//
//   javac -d out LgspExample.java
//   LGSP_URL=http://127.0.0.1:8080 \
//   LGSP_SOURCE_KEY=AK... LGSP_SOURCE_SECRET=... \
//   LGSP_DEST_UNIT=000.00.01.H23 LGSP_DEST_KEY=AK... LGSP_DEST_SECRET=... \
//   java -cp out LgspExample
//
// Both keys are HMAC-SHA256 keys. docs/integrator-guide.md explains every rule used here; a test
// (tests/test_examples.py) runs this file against a live hub and keeps the guide's excerpts equal to it.

import java.io.ByteArrayOutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.net.http.WebSocketHandshakeException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Collectors;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public final class LgspExample {

    record Credentials(String key, String secret) {}

    // [start:sign]
    static final String EMPTY_SHA256 = sha256Hex(new byte[0]);
    static final SecureRandom RANDOM = new SecureRandom();

    static String sha256Hex(byte[] data) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    // RFC 3986: keep A-Z a-z 0-9 - . _ ~, write every other byte as %XX (uppercase hex).
    static String encode(byte[] bytes) {
        StringBuilder out = new StringBuilder();
        for (byte b : bytes) {
            char c = (char) (b & 0xff);
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || "-._~".indexOf(c) >= 0) {
                out.append(c);
            } else {
                out.append(String.format("%%%02X", b & 0xff));
            }
        }
        return out.toString();
    }

    // Percent-decode to bytes. java.net.URLDecoder would turn "+" into a space: here "+" stays "+",
    // and a "%" not followed by two hex digits stays as it is.
    static byte[] percentDecode(String text) {
        byte[] raw = text.getBytes(StandardCharsets.UTF_8);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 0; i < raw.length; i++) {
            if (raw[i] == '%' && i + 2 < raw.length
                    && Character.digit(raw[i + 1], 16) >= 0 && Character.digit(raw[i + 2], 16) >= 0) {
                out.write(Character.digit(raw[i + 1], 16) * 16 + Character.digit(raw[i + 2], 16));
                i += 2;
            } else {
                out.write(raw[i]);
            }
        }
        return out.toByteArray();
    }

    static String canonicalQuery(String rawQuery) {
        if (rawQuery == null || rawQuery.isEmpty()) {
            return "";
        }
        List<String[]> pairs = new ArrayList<>();
        for (String part : rawQuery.split("&", -1)) {
            int eq = part.indexOf('=');
            String name = eq < 0 ? part : part.substring(0, eq);
            String value = eq < 0 ? "" : part.substring(eq + 1);
            pairs.add(new String[] {encode(percentDecode(name)), encode(percentDecode(value))});
        }
        // The encoded strings are ASCII, so String order is byte order.
        pairs.sort(Comparator.<String[], String>comparing(p -> p[0]).thenComparing(p -> p[1]));
        return pairs.stream().map(p -> p[0] + "=" + p[1]).collect(Collectors.joining("&"));
    }

    // The nine lines of LGSP1, signed with HMAC-SHA256 over the secret key's UTF-8 bytes.
    static String signature(Credentials creds, String method, String path, String query, String date,
                            String nonce, String session, String contentSha256) {
        String toSign = String.join("\n", "LGSP1-HMAC-SHA256", method.toUpperCase(), path, canonicalQuery(query),
                                    creds.key(), date, nonce, session, contentSha256);
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(creds.secret().getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            byte[] raw = mac.doFinal(toSign.getBytes(StandardCharsets.UTF_8));
            return "HMAC-SHA256 " + Base64.getEncoder().encodeToString(raw);
        } catch (java.security.GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    // Headers for one request. `path` and `query` are the raw forms that go on the wire
    // (URI.getRawPath / getRawQuery): never the decoded ones.
    static Map<String, String> signedHeaders(Credentials creds, String method, String path, String query,
                                             String contentSha256) {
        String date = Instant.now().toString(); // "2026-12-05T09:01:02.345678Z": sent and signed as is
        byte[] random = new byte[18];
        RANDOM.nextBytes(random);
        String nonce = Base64.getUrlEncoder().withoutPadding().encodeToString(random); // [A-Za-z0-9_-]{24}
        Map<String, String> headers = new LinkedHashMap<>();
        headers.put("X-LGSP-Key", creds.key());
        headers.put("X-LGSP-Date", date);
        headers.put("X-LGSP-Nonce", nonce);
        headers.put("X-LGSP-Content-SHA256", contentSha256);
        headers.put("X-LGSP-Signature", signature(creds, method, path, query, date, nonce, "", contentSha256));
        return headers;
    }
    // [end:sign]

    static String hub;
    static final HttpClient HTTP = HttpClient.newBuilder()
            .version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10))
            .build();

    // [start:request]
    // One signed call. JSON bodies go as application/json, content as application/octet-stream; a call
    // without a body (GET, POST .../ready, POST .../cancel) sends none and signs the empty-body hash.
    static HttpResponse<byte[]> call(Credentials creds, String method, String pathOrUrl, String contentType,
                                     byte[] body) throws Exception {
        URI uri = URI.create(pathOrUrl.startsWith("http") ? pathOrUrl : hub + pathOrUrl);
        byte[] bytes = body == null ? new byte[0] : body;
        HttpRequest.Builder request = HttpRequest.newBuilder(uri)
                .timeout(Duration.ofSeconds(60))
                .method(method, body == null ? HttpRequest.BodyPublishers.noBody()
                                             : HttpRequest.BodyPublishers.ofByteArray(bytes));
        signedHeaders(creds, method, uri.getRawPath(), uri.getRawQuery(), sha256Hex(bytes)).forEach(request::header);
        if (contentType != null) {
            request.header("Content-Type", contentType);
        }
        request.header("Accept-Language", "en");
        HttpResponse<byte[]> response = HTTP.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
        if (response.statusCode() >= 300) { // application/problem+json: program against its "code"
            Map<?, ?> problem = (Map<?, ?>) Json.parse(new String(response.body(), StandardCharsets.UTF_8));
            throw new IllegalStateException(method + " " + uri.getRawPath() + ": " + response.statusCode() + " "
                                            + problem.get("code") + ": " + problem.get("detail"));
        }
        return response;
    }

    static Map<?, ?> callJson(Credentials creds, String method, String pathOrUrl, String json) throws Exception {
        byte[] body = json == null ? null : json.getBytes(StandardCharsets.UTF_8);
        HttpResponse<byte[]> response = call(creds, method, pathOrUrl, json == null ? null : "application/json", body);
        return (Map<?, ?>) Json.parse(new String(response.body(), StandardCharsets.UTF_8));
    }
    // [end:request]

    // [start:stream]
    // The event stream: a WebSocket whose upgrade request is signed like a GET with no body.
    // (A browser cannot set these headers: it opens the stream with a ticket instead, see the guide.)
    static WebSocket openStream(Credentials creds, LinkedBlockingQueue<Map<?, ?>> messages) throws Exception {
        URI uri = URI.create(hub.replaceFirst("^http", "ws") + "/v1/events");
        WebSocket.Builder builder = HTTP.newWebSocketBuilder().connectTimeout(Duration.ofSeconds(10));
        signedHeaders(creds, "GET", uri.getRawPath(), uri.getRawQuery(), EMPTY_SHA256).forEach(builder::header);
        WebSocket.Listener listener = new WebSocket.Listener() {
            private final StringBuilder text = new StringBuilder();

            @Override
            public CompletionStage<?> onText(WebSocket socket, CharSequence part, boolean last) {
                text.append(part);
                if (last) { // one JSON object per message, possibly in several frames
                    messages.add((Map<?, ?>) Json.parse(text.toString()));
                    text.setLength(0);
                }
                socket.request(1);
                return null;
            }

            @Override
            public CompletionStage<?> onClose(WebSocket socket, int code, String reason) {
                if (code == 4401) { // the key was revoked or the unit suspended
                    System.err.println("stream closed by the hub: " + reason);
                }
                return null;
            }
        };
        try {
            return builder.buildAsync(uri, listener).join();
        } catch (CompletionException e) {
            if (e.getCause() instanceof WebSocketHandshakeException refused) {
                // A refused handshake carries no readable body: the same request as a plain GET
                // gets the hub's problem (auth.revoked_key, auth.bad_signature, ...) to report.
                call(creds, "GET", "/v1/events", null, null);
                throw new IllegalStateException("stream refused: HTTP " + refused.getResponse().statusCode());
            }
            throw e;
        }
    }
    // [end:stream]

    static Map<?, ?> waitFor(LinkedBlockingQueue<Map<?, ?>> messages, Predicate<Map<?, ?>> test, int seconds,
                             String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (true) {
            Map<?, ?> message = messages.poll(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            if (message != null && test.test(message)) {
                return message;
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("no " + what + " within " + seconds + " s");
            }
        }
    }

    static void ok(String step, String text) {
        System.out.println(String.format("ok   %-10s %s", step, text));
    }

    static String need(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalStateException("environment variable " + name + " is not set");
        }
        return value;
    }

    public static void main(String[] args) {
        String step = "config";
        WebSocket socket = null;
        try {
            hub = need("LGSP_URL").replaceFirst("/+$", "");
            Credentials source = new Credentials(need("LGSP_SOURCE_KEY"), need("LGSP_SOURCE_SECRET"));
            String destUnit = need("LGSP_DEST_UNIT");
            Credentials dest = new Credentials(need("LGSP_DEST_KEY"), need("LGSP_DEST_SECRET"));

            // 0. The signing code against the guide's worked example, before talking to any hub.
            step = "self-test";
            String got = signature(new Credentials("AK_TEST_0001", "s3cr3t-EXAMPLE-key"), "GET", "/v1/inbox",
                                   "limit=10", "2026-12-05T09:01:02.345Z", "n0nce-0003", "", EMPTY_SHA256);
            if (!got.equals("HMAC-SHA256 QJWgkROL0aktfksIi2x4eDKaMzhibi1Fu7ICAi2JEME=")) {
                throw new IllegalStateException("worked example signs to " + got + ", not as the guide says");
            }
            if (!canonicalQuery("q=S%e1%bb%9f%20KH&limit=5&a+b=%zz").equals("a%2Bb=%25zz&limit=5&q=S%E1%BB%9F%20KH")) {
                throw new IllegalStateException("canonical query differs from the guide's rules");
            }
            ok(step, "the guide's worked example signs as published");

            // 1. The destination listens.
            step = "stream";
            LinkedBlockingQueue<Map<?, ?>> events = new LinkedBlockingQueue<>();
            socket = openStream(dest, events);
            Map<?, ?> hello = waitFor(events, m -> "hello".equals(m.get("type")), 5, "hello");
            ok(step, "opened with signed headers; hello for " + hello.get("unit") + ", "
                     + ((List<?>) hello.get("inbox")).size() + " waiting");

            // 2. The source asks for a packet space, then uploads the content.
            step = "create";
            byte[] content = ("Công văn thử nghiệm từ Java, " + Instant.now() + "\n").getBytes(StandardCharsets.UTF_8);
            String sha256 = sha256Hex(content);
            Map<?, ?> created = callJson(source, "POST", "/v1/packets", "{\"to\": [" + Json.quote(destUnit) + "], "
                    + "\"subject\": " + Json.quote("Thử nghiệm ví dụ Java") + ", \"priority\": 0, "
                    + "\"data_type\": \"binary\", \"size\": " + content.length + ", \"sha256\": \"" + sha256 + "\"}");
            String id = (String) created.get("id");
            ok(step, "packet " + id + " to " + destUnit);

            step = "upload";
            String uploadUrl = (String) ((Map<?, ?>) created.get("upload")).get("url");
            HttpResponse<byte[]> put = call(source, "PUT", uploadUrl, "application/octet-stream", content);
            Map<?, ?> uploaded = (Map<?, ?>) Json.parse(new String(put.body(), StandardCharsets.UTF_8));
            if (!sha256.equals(uploaded.get("sha256")) || !"accepted".equals(uploaded.get("state"))) {
                throw new IllegalStateException("unexpected answer " + uploaded);
            }
            ok(step, content.length + " bytes, state " + uploaded.get("state"));

            // 3. The destination hears of it, finds it in its inbox (page by page), fetches it.
            step = "event";
            waitFor(events, m -> "packet.available".equals(m.get("type")) && id.equals(m.get("id")), 10,
                    "packet.available");
            ok(step, "packet.available " + id);

            step = "inbox";
            String cursor = null;
            for (int page = 1; ; page++) {
                Map<?, ?> answer = callJson(dest, "GET", "/v1/inbox?limit=10" + (cursor == null ? "" : "&cursor=" + cursor), null);
                Map<?, ?> item = ((List<?>) answer.get("items")).stream().map(i -> (Map<?, ?>) i)
                        .filter(i -> id.equals(i.get("id"))).findFirst().orElse(null);
                if (item != null) {
                    if (!sha256.equals(item.get("sha256"))) {
                        throw new IllegalStateException("inbox item " + item);
                    }
                    ok(step, "found on page " + page + ": \"" + item.get("subject") + "\" from " + item.get("from"));
                    break;
                }
                cursor = (String) answer.get("next");
                if (cursor == null) {
                    throw new IllegalStateException("packet " + id + " is not in the inbox");
                }
            }

            step = "ready";
            Map<?, ?> download = (Map<?, ?>) callJson(dest, "POST", "/v1/packets/" + id + "/ready", null).get("download");
            ok(step, "download until " + download.get("expires_at"));

            step = "download";
            HttpResponse<byte[]> fetched = call(dest, "GET", (String) download.get("url"), null, null);
            String received = sha256Hex(fetched.body());
            String announced = fetched.headers().firstValue("X-LGSP-Content-SHA256").orElse("");
            if (!received.equals(announced) || !received.equals(sha256)) {
                throw new IllegalStateException("content hashes to " + received + "; the hub says " + announced);
            }
            ok(step, fetched.body().length + " bytes, SHA-256 verified " + received);

            step = "ack";
            Object state = callJson(dest, "POST", "/v1/packets/" + id + "/ack", "{\"sha256\": \"" + received + "\"}")
                    .get("state");
            if (!"delivered".equals(state)) {
                throw new IllegalStateException("state " + state);
            }
            ok(step, "state " + state);

            // 4. The source sees the delivery.
            step = "status";
            Map<?, ?> view = callJson(source, "GET", "/v1/packets/" + id, null);
            List<String> states = new ArrayList<>();
            for (Object d : (List<?>) view.get("deliveries")) {
                states.add(((Map<?, ?>) d).get("unit") + " " + ((Map<?, ?>) d).get("state"));
            }
            if (!states.equals(List.of(destUnit + " delivered"))) {
                throw new IllegalStateException(String.join(", ", states));
            }
            ok(step, String.join(", ", states) + "; content " + view.get("content"));
            socket.sendClose(WebSocket.NORMAL_CLOSURE, "done").join();
        } catch (Exception e) {
            System.err.println(String.format("FAIL %-10s %s", step, e.getMessage()));
            if (socket != null) {
                socket.abort();
            }
            System.exit(1);
        }
    }

    /** Just enough JSON for this example: objects, arrays, strings, numbers, true/false/null. */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) {
            this.s = s;
        }

        static Object parse(String text) {
            Json p = new Json(text);
            Object value = p.value();
            p.space();
            if (p.i != text.length()) {
                throw new IllegalArgumentException("trailing characters in JSON at " + p.i);
            }
            return value;
        }

        static String quote(String text) {
            StringBuilder out = new StringBuilder("\"");
            for (char c : text.toCharArray()) {
                if (c == '"' || c == '\\') {
                    out.append('\\').append(c);
                } else if (c < 0x20) {
                    out.append(String.format("\\u%04x", (int) c));
                } else {
                    out.append(c);
                }
            }
            return out.append('"').toString();
        }

        private void space() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        private Object value() {
            space();
            if (i >= s.length()) {
                throw new IllegalArgumentException("unexpected end of JSON");
            }
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                i++;
                space();
                if (s.charAt(i) == '}') {
                    i++;
                    return map;
                }
                while (true) {
                    space();
                    String key = string();
                    space();
                    expect(':');
                    map.put(key, value());
                    space();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect('}');
                        return map;
                    }
                }
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                i++;
                space();
                if (s.charAt(i) == ']') {
                    i++;
                    return list;
                }
                while (true) {
                    list.add(value());
                    space();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect(']');
                        return list;
                    }
                }
            }
            if (c == '"') {
                return string();
            }
            for (String word : new String[] {"true", "false", "null"}) {
                if (s.startsWith(word, i)) {
                    i += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            if (start == i) {
                throw new IllegalArgumentException("unexpected character in JSON at " + i);
            }
            String number = s.substring(start, i);
            return number.matches("-?\\d+") ? (Object) Long.valueOf(number) : (Object) Double.valueOf(number);
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (s.charAt(i) != '"') {
                char c = s.charAt(i++);
                if (c == '\\') {
                    char e = s.charAt(i++);
                    switch (e) {
                        case 'n' -> out.append('\n');
                        case 't' -> out.append('\t');
                        case 'r' -> out.append('\r');
                        case 'b' -> out.append('\b');
                        case 'f' -> out.append('\f');
                        case 'u' -> {
                            out.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                            i += 4;
                        }
                        default -> out.append(e);
                    }
                } else {
                    out.append(c);
                }
            }
            i++;
            return out.toString();
        }

        private void expect(char c) {
            if (i >= s.length() || s.charAt(i) != c) {
                throw new IllegalArgumentException("expected '" + c + "' in JSON at " + i);
            }
            i++;
        }
    }
}
