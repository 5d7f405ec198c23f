import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.logging.Level;
import org.neo4j.logging.log4j.Log4jLogProvider;

/**
 * Minimal launcher for an embedded Neo4j Community 5.x server with Bolt.
 *
 * <pre>
 *   NEO4J_PASSWORD=... java -cp 'classes:libs/*' LineageNeo4j &lt;home-dir&gt; &lt;bolt-port&gt;
 * </pre>
 *
 * Bolt listens on 127.0.0.1 only, authentication is enabled and the password
 * of the built-in user "neo4j" is set from the environment variable
 * NEO4J_PASSWORD on every start (never from a literal). The HTTP/HTTPS
 * connectors and usage-data reporting are disabled. Once the server answers
 * {@code RETURN 1} the launcher prints a line "READY bolt://127.0.0.1:port"
 * on stdout; SIGTERM shuts the database down cleanly through a shutdown hook.
 *
 * Transaction logs are kept up to NEO4J_TX_LOG_RETENTION (default "256M
 * size"; pruned at checkpoints) instead of Neo4j's "2 days": these are
 * development and test servers, the event log is Kafka, and a day of
 * benchmarks left 9.7 GB of logs under the default.
 *
 * Optional environment: NEO4J_PAGECACHE_MB (default 256),
 * NEO4J_TX_LOG_RETENTION (a db.tx_log.rotation.retention_policy value).
 */
public final class LineageNeo4j {
    private static final String HOST = "127.0.0.1";

    private LineageNeo4j() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: LineageNeo4j <home-dir> <bolt-port>");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        int port = Integer.parseInt(args[1]);
        String password = System.getenv("NEO4J_PASSWORD");
        if (password == null || password.isEmpty()) {
            System.err.println("FAILED: environment variable NEO4J_PASSWORD is not set");
            System.exit(2);
        }
        long pageCacheMb = Long.parseLong(envOr("NEO4J_PAGECACHE_MB", "256"));
        String txLogRetention = envOr("NEO4J_TX_LOG_RETENTION", "256M size");
        Files.createDirectories(home);

        long t0 = System.nanoTime();
        DatabaseManagementService dbms;
        try {
            dbms = new DatabaseManagementServiceBuilder(home)
                    .setUserLogProvider(new Log4jLogProvider(System.out, Level.INFO))
                    .setConfig(Map.of(
                            BoltConnector.enabled, true,
                            BoltConnector.listen_address, new SocketAddress(HOST, port),
                            BoltConnector.advertised_address, new SocketAddress(HOST, port),
                            GraphDatabaseSettings.default_listen_address, new SocketAddress(HOST),
                            GraphDatabaseSettings.auth_enabled, true,
                            HttpConnector.enabled, false,
                            HttpsConnector.enabled, false,
                            GraphDatabaseSettings.udc_enabled, false,
                            GraphDatabaseSettings.pagecache_memory, pageCacheMb * 1024 * 1024,
                            GraphDatabaseSettings.keep_logical_logs, txLogRetention))
                    .build();
        } catch (Throwable e) {
            e.printStackTrace();
            System.err.println("FAILED: could not start Neo4j: " + rootMessage(e));
            System.exit(1);
            return;
        }
        final DatabaseManagementService service = dbms;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("STOPPING");
            System.out.flush();
            service.shutdown();
            System.out.println("STOPPED");
            System.out.flush();
        }, "lineage-neo4j-shutdown"));

        try {
            setPassword(service, password);
            Object one = service.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME)
                    .executeTransactionally("RETURN 1 AS one", Map.of(),
                            r -> r.hasNext() ? r.next().get("one") : null);
            if (one == null || ((Number) one).longValue() != 1L) {
                throw new IllegalStateException("RETURN 1 returned " + one);
            }
        } catch (Throwable e) {
            e.printStackTrace();
            System.err.println("FAILED: Neo4j started but is not usable: " + rootMessage(e));
            System.exit(1); // runs the shutdown hook
            return;
        }

        long ms = (System.nanoTime() - t0) / 1_000_000;
        System.out.println("READY bolt://" + HOST + ":" + port + " (" + ms + " ms, home " + home + ")");
        System.out.flush();

        new CountDownLatch(1).await(); // until SIGTERM/SIGINT
    }

    /** Sets the password of "neo4j" on the system database (idempotent). */
    private static void setPassword(DatabaseManagementService service, String password) {
        var system = service.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        try {
            system.executeTransactionally(
                    "ALTER USER neo4j IF EXISTS SET PASSWORD $p CHANGE NOT REQUIRED",
                    Map.of("p", password));
        } catch (RuntimeException e) {
            // A restart with the same password: Neo4j refuses to "change" it.
            if (!causedBy(e, "cannot be the same")) {
                throw e;
            }
            system.executeTransactionally("ALTER USER neo4j IF EXISTS SET PASSWORD CHANGE NOT REQUIRED");
        }
    }

    private static boolean causedBy(Throwable e, String text) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (t.getMessage() != null && t.getMessage().contains(text)) {
                return true;
            }
        }
        return false;
    }

    private static String rootMessage(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        return t == e ? String.valueOf(e) : e.getClass().getSimpleName() + ": ... caused by " + t;
    }

    private static String envOr(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isBlank() ? dflt : v.trim();
    }
}
