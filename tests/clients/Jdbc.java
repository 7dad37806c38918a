// pgjdbc (the PostgreSQL JDBC driver) against a running tessera server (TESSERA_PORT).
//
//   java -cp /usr/share/java/postgresql.jar tests/clients/Jdbc.java
//
// pgjdbc uses the extended protocol for everything; a PreparedStatement executed more
// than prepareThreshold (5) times switches to a named server-side statement and asks for
// binary results; DatabaseMetaData is answered by large pg_catalog queries. Tables: jdbc_*.
// Prints one line per passed check; stops at the first failure with exit code 1 (set
// TESSERA_KEEP_GOING=1 to run every check), and ends with "jdbc: N passed, N failed".

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class Jdbc {
    interface Body { void run() throws Exception; }

    static int passed = 0;
    static List<String> failed = new ArrayList<>();
    static final boolean KEEP_GOING = "1".equals(System.getenv("TESSERA_KEEP_GOING"));
    static String url;
    static Connection conn;

    static void check(String name, Body body) {
        try {
            if (conn != null && !conn.isClosed() && !conn.getAutoCommit()) {
                conn.rollback();
                conn.setAutoCommit(true);
            }
            body.run();
            passed++;
            System.out.println("ok   jdbc: " + name);
        } catch (Throwable e) {
            String msg = e.toString().replaceAll("\\s+", " ");
            if (e instanceof SQLException) msg += " [SQLState " + ((SQLException) e).getSQLState() + "]";
            if (msg.length() > 700 && !"1".equals(System.getenv("TESSERA_VERBOSE"))) msg = msg.substring(0, 700) + " ...";
            System.out.println("FAIL jdbc: " + name + ": " + msg);
            if ("1".equals(System.getenv("TESSERA_VERBOSE"))) e.printStackTrace(System.out);
            failed.add(name);
            if (!KEEP_GOING) finish();
        }
    }

    static void finish() {
        System.out.println("jdbc: " + passed + " passed, " + failed.size() + " failed");
        if (!failed.isEmpty()) System.out.println("jdbc: FAILED: " + String.join(", ", failed));
        System.exit(failed.isEmpty() ? 0 : 1);
    }

    static void eq(Object actual, Object expected, String what) {
        if (!Objects.equals(actual, expected)) {
            throw new AssertionError(what + ": expected " + show(expected) + ", got " + show(actual));
        }
    }

    static String show(Object o) {
        return o == null ? "null" : "<" + o + "> (" + o.getClass().getSimpleName() + ")";
    }

    static void isTrue(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static void expectSqlState(String state, Body body, String what) throws Exception {
        try {
            body.run();
        } catch (SQLException e) {
            eq(e.getSQLState(), state, what + " SQLState (" + e.getMessage() + ")");
            return;
        }
        throw new AssertionError(what + ": expected an SQLException with SQLState " + state + ", none raised");
    }

    static List<String> column(ResultSet rs, String col) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) out.add(rs.getString(col));
        rs.close();
        return out;
    }

    static void exec(String sql) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.execute(sql);
        }
    }

    static final Timestamp TS = Timestamp.valueOf("2024-01-02 03:04:05.678");

    public static void main(String[] args) throws Exception {
        String port = System.getenv("TESSERA_PORT");
        if (port == null || port.isEmpty()) {
            System.err.println("TESSERA_PORT is not set: export TESSERA_PORT=<port of a running tessera server>");
            System.exit(2);
        }
        url = "jdbc:postgresql://127.0.0.1:" + port + "/tessera?sslmode=disable&connectTimeout=10&socketTimeout=60";

        check("connect, product name and version", () -> {
            String password = System.getenv("TESSERA_PASSWORD");
            conn = DriverManager.getConnection(url, "tessera", password == null ? "" : password);
            DatabaseMetaData md = conn.getMetaData();
            eq(md.getDatabaseProductName(), "PostgreSQL", "product name");
            isTrue(md.getDatabaseMajorVersion() >= 9, "major version " + md.getDatabaseMajorVersion());
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT version()")) {
                isTrue(rs.next(), "a row");
                isTrue(rs.getString(1).startsWith("PostgreSQL "), "version() = " + rs.getString(1));
            }
        });

        check("create tables (one with a PRIMARY KEY) and a view", () -> {
            exec("DROP VIEW IF EXISTS jdbc_v");
            exec("DROP TABLE IF EXISTS jdbc_items");
            exec("CREATE TABLE jdbc_items (id INTEGER PRIMARY KEY, name TEXT, score DOUBLE PRECISION, active BOOLEAN, "
                    + "created TIMESTAMP, amount NUMERIC(10,2), big BIGINT)");
            exec("CREATE VIEW jdbc_v AS SELECT id, name FROM jdbc_items WHERE active");
            // Rows 1..10 come from one plain statement, so the checks that read them do not
            // depend on the PreparedStatement INSERT check (which writes to jdbc_ins).
            StringBuilder sql = new StringBuilder("INSERT INTO jdbc_items (id, name, score, active, created, amount, big) VALUES ");
            for (int i = 1; i <= 10; i++) {
                if (i > 1) sql.append(", ");
                sql.append("(").append(i).append(", 'name").append(i).append("', ").append(i * 1.5).append(", ")
                   .append(i % 2 == 0).append(", '").append(new Timestamp(TS.getTime() + i * 1000L)).append("', ")
                   .append(i).append(".25, ").append(10_000_000_000L + i).append(")");
            }
            try (Statement st = conn.createStatement()) {
                eq(st.executeUpdate(sql.toString()), 10, "multi-row INSERT count");
            }
        });

        check("PreparedStatement INSERT executed 10 times (past prepareThreshold)", () -> {
            exec("DROP TABLE IF EXISTS jdbc_ins");
            exec("CREATE TABLE jdbc_ins (id INTEGER, name TEXT, score DOUBLE PRECISION, active BOOLEAN, "
                    + "created TIMESTAMP, amount NUMERIC(10,2), big BIGINT)");
            try (PreparedStatement ps = conn.prepareStatement(
                    "INSERT INTO jdbc_ins (id, name, score, active, created, amount, big) VALUES (?, ?, ?, ?, ?, ?, ?)")) {
                for (int i = 1; i <= 10; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "name" + i);
                    ps.setDouble(3, i * 1.5);
                    ps.setBoolean(4, i % 2 == 0);
                    ps.setTimestamp(5, new Timestamp(TS.getTime() + i * 1000L));
                    ps.setBigDecimal(6, new BigDecimal(i + ".25"));
                    ps.setLong(7, 10_000_000_000L + i);
                    eq(ps.executeUpdate(), 1, "update count of insert " + i);
                }
            }
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT count(*), sum(id), min(created), max(amount) FROM jdbc_ins")) {
                rs.next();
                eq(rs.getLong(1), 10L, "rows inserted");
                eq(rs.getLong(2), 55L, "sum of ids");
                eq(rs.getTimestamp(3), new Timestamp(TS.getTime() + 1000L), "min(created)");
                eq(rs.getBigDecimal(4), new BigDecimal("10.25"), "max(amount)");
            }
            exec("DROP TABLE jdbc_ins");
        });

        check("PreparedStatement SELECT executed 10 times (named statement, binary results)", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT id, name, score, active, created, amount, big FROM jdbc_items WHERE id = ?")) {
                for (int round = 0; round < 10; round++) {
                    int i = 1 + round % 10;
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        isTrue(rs.next(), "round " + round + ": a row");
                        eq(rs.getInt(1), i, "round " + round + " id");
                        eq(rs.getString(2), "name" + i, "round " + round + " name");
                        eq(rs.getDouble(3), i * 1.5, "round " + round + " score");
                        eq(rs.getBoolean(4), i % 2 == 0, "round " + round + " active");
                        eq(rs.getTimestamp(5), new Timestamp(TS.getTime() + i * 1000L), "round " + round + " created");
                        eq(rs.getBigDecimal(6), new BigDecimal(i + ".25"), "round " + round + " amount");
                        eq(rs.getLong(7), 10_000_000_000L + i, "round " + round + " big");
                        isTrue(!rs.next(), "round " + round + ": one row only");
                    }
                }
            }
        });

        check("ResultSet getObject classes and ResultSetMetaData types", () -> {
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT id, name, score, active, created, amount, big FROM jdbc_items WHERE id = 2")) {
                ResultSetMetaData m = rs.getMetaData();
                eq(m.getColumnCount(), 7, "column count");
                List<String> labels = new ArrayList<>(), typeNames = new ArrayList<>();
                List<Integer> types = new ArrayList<>();
                for (int c = 1; c <= 7; c++) {
                    labels.add(m.getColumnLabel(c));
                    typeNames.add(m.getColumnTypeName(c));
                    types.add(m.getColumnType(c));
                }
                eq(labels, List.of("id", "name", "score", "active", "created", "amount", "big"), "labels");
                eq(typeNames, List.of("int4", "text", "float8", "bool", "timestamp", "numeric", "int8"), "type names");
                eq(types, List.of(Types.INTEGER, Types.VARCHAR, Types.DOUBLE, Types.BIT, Types.TIMESTAMP, Types.NUMERIC, Types.BIGINT), "java.sql.Types");
                isTrue(rs.next(), "a row");
                eq(rs.getObject(1), 2, "id object");
                eq(rs.getObject(2), "name2", "name object");
                eq(rs.getObject(3), 3.0, "score object");
                eq(rs.getObject(4), true, "active object");
                eq(rs.getObject(5), new Timestamp(TS.getTime() + 2000L), "created object");
                eq(rs.getObject(6), new BigDecimal("2.25"), "amount object");
                eq(rs.getObject(7), 10_000_000_002L, "big object");
            }
        });

        check("NULLs through a PreparedStatement and wasNull", () -> {
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_items (id, name, score) VALUES (?, ?, ?)")) {
                ps.setInt(1, 100);
                ps.setNull(2, Types.VARCHAR);
                ps.setNull(3, Types.DOUBLE);
                eq(ps.executeUpdate(), 1, "update count");
            }
            try (PreparedStatement ps = conn.prepareStatement("SELECT name, score FROM jdbc_items WHERE id = ?")) {
                ps.setInt(1, 100);
                try (ResultSet rs = ps.executeQuery()) {
                    isTrue(rs.next(), "a row");
                    eq(rs.getString(1), null, "name");
                    rs.getDouble(2);
                    isTrue(rs.wasNull(), "score wasNull");
                }
            }
            exec("DELETE FROM jdbc_items WHERE id = 100");
        });

        check("executeBatch of INSERTs", () -> {
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_items (id, name) VALUES (?, ?)")) {
                for (int i = 201; i <= 203; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "batch" + i);
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                eq(counts.length, 3, "batch result length");
                for (int c : counts) isTrue(c == 1 || c == Statement.SUCCESS_NO_INFO, "batch count " + c);
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_items WHERE id > 200")) {
                rs.next();
                eq(rs.getLong(1), 3L, "rows inserted by the batch");
            }
        });

        check("executeUpdate counts for UPDATE and DELETE", () -> {
            try (PreparedStatement ps = conn.prepareStatement("UPDATE jdbc_items SET name = ? WHERE id > ?")) {
                ps.setString(1, "b");
                ps.setInt(2, 200);
                eq(ps.executeUpdate(), 3, "UPDATE count");
            }
            try (Statement st = conn.createStatement()) {
                eq(st.executeUpdate("DELETE FROM jdbc_items WHERE id > 200"), 3, "DELETE count");
                eq(st.executeUpdate("DELETE FROM jdbc_items WHERE id > 200"), 0, "DELETE count, no match");
            }
        });

        check("setFetchSize in a transaction reads the result in portions", () -> {
            conn.setAutoCommit(false);
            List<Integer> ids = new ArrayList<>();
            try (PreparedStatement ps = conn.prepareStatement("SELECT id FROM jdbc_items WHERE id <= ? ORDER BY id")) {
                ps.setFetchSize(3);
                ps.setInt(1, 10);
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) ids.add(rs.getInt(1));
                }
            }
            conn.commit();
            conn.setAutoCommit(true);
            eq(ids, List.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), "ids");
        });

        check("undefined table: SQLState 42P01, connection usable after (autocommit and after rollback)", () -> {
            expectSqlState("42P01", () -> exec("SELECT * FROM jdbc_nope"), "missing table (autocommit)");
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_items")) {
                rs.next();
                eq(rs.getLong(1), 10L, "query after the error");
            }
            conn.setAutoCommit(false);
            expectSqlState("42P01", () -> {
                try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM jdbc_nope WHERE x = ?")) {
                    ps.setInt(1, 1);
                    ps.executeQuery();
                }
            }, "missing table (in a transaction)");
            conn.rollback();
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
                isTrue(rs.next(), "query after rollback");
            }
            conn.commit();
            conn.setAutoCommit(true);
        });

        check("DatabaseMetaData.getTables (TABLE and VIEW)", () -> {
            DatabaseMetaData md = conn.getMetaData();
            List<String> tables = column(md.getTables(null, "public", "jdbc_%", new String[]{"TABLE"}), "TABLE_NAME");
            isTrue(tables.contains("jdbc_items") && !tables.contains("jdbc_v"), "TABLE names: " + tables);
            List<String> views = column(md.getTables(null, "public", "jdbc_%", new String[]{"VIEW"}), "TABLE_NAME");
            eq(views, List.of("jdbc_v"), "VIEW names");
            Map<String, String> kinds = new TreeMap<>();
            try (ResultSet rs = md.getTables(null, "public", "jdbc_%", new String[]{"TABLE", "VIEW"})) {
                while (rs.next()) kinds.put(rs.getString("TABLE_NAME"), rs.getString("TABLE_TYPE"));
            }
            eq(kinds.get("jdbc_items"), "TABLE", "TABLE_TYPE of jdbc_items");
            eq(kinds.get("jdbc_v"), "VIEW", "TABLE_TYPE of jdbc_v");
        });

        check("DatabaseMetaData.getColumns", () -> {
            DatabaseMetaData md = conn.getMetaData();
            List<String> names = new ArrayList<>(), typeNames = new ArrayList<>();
            List<Integer> types = new ArrayList<>(), positions = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "jdbc_items", "%")) {
                while (rs.next()) {
                    names.add(rs.getString("COLUMN_NAME"));
                    typeNames.add(rs.getString("TYPE_NAME"));
                    types.add(rs.getInt("DATA_TYPE"));
                    positions.add(rs.getInt("ORDINAL_POSITION"));
                }
            }
            eq(names, List.of("id", "name", "score", "active", "created", "amount", "big"), "COLUMN_NAME");
            eq(typeNames, List.of("int4", "text", "float8", "bool", "timestamp", "numeric", "int8"), "TYPE_NAME");
            eq(types, List.of(Types.INTEGER, Types.VARCHAR, Types.DOUBLE, Types.BIT, Types.TIMESTAMP, Types.NUMERIC, Types.BIGINT), "DATA_TYPE");
            eq(positions, List.of(1, 2, 3, 4, 5, 6, 7), "ORDINAL_POSITION");
        });

        check("DatabaseMetaData.getSchemas", () -> {
            List<String> schemas = column(conn.getMetaData().getSchemas(), "TABLE_SCHEM");
            isTrue(schemas.contains("public"), "public not in " + schemas);
        });

        check("DatabaseMetaData.getPrimaryKeys", () -> {
            List<String> cols = column(conn.getMetaData().getPrimaryKeys(null, "public", "jdbc_items"), "COLUMN_NAME");
            eq(cols, List.of("id"), "primary key columns");
        });

        check("drop view and table", () -> {
            exec("DROP VIEW jdbc_v");
            exec("DROP TABLE jdbc_items");
            exec("DROP TABLE IF EXISTS jdbc_ins"); // left behind only if its check failed
            conn.close();
        });

        finish();
    }
}
