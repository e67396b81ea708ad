// pgjdbc (the PostgreSQL JDBC driver) against a running `sluice serve`:
// prepared statements past pgjdbc's prepareThreshold (named server-side
// statements with binary transfer), batches, ResultSet types,
// DatabaseMetaData, SQLSTATEs and transactions.
//
// Usage: java -cp /usr/share/java/postgresql.jar sql-tests/clients/jdbc/JdbcCheck.java HOST PORT
// Exits non-zero on the first failed check.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.Properties;

public class JdbcCheck {
    static String url;

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: JdbcCheck HOST PORT");
            System.exit(2);
        }
        url = "jdbc:postgresql://" + args[0] + ":" + Integer.parseInt(args[1]) + "/sluice";
        try (Connection conn = connect(new Properties())) {
            check(conn.getAutoCommit(), "autocommit is on by default");
            DatabaseMetaData meta = conn.getMetaData();
            check(meta.getDatabaseProductName().equals("PostgreSQL"), meta.getDatabaseProductName());
            check(meta.getDatabaseMajorVersion() == 15, meta.getDatabaseProductVersion());
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE jdbc_check (id INT, big BIGINT, score DOUBLE PRECISION, name TEXT, "
                        + "ok BOOLEAN, day DATE, at TIMESTAMP, raw BYTEA)");
            }
            batchInserts(conn);
            preparedPastThreshold(conn);
            resultTypes(conn);
            metadata(conn);
            errors(conn);
        }
        transactions();
        System.out.println("jdbc checks passed");
    }

    static Connection connect(Properties props) throws SQLException {
        props.setProperty("user", "sluice");
        return DriverManager.getConnection(url, props);
    }

    static void check(boolean ok, Object message) {
        if (!ok) {
            throw new AssertionError(String.valueOf(message));
        }
    }

    static void checkEq(Object actual, Object expected, String what) {
        boolean same = (actual instanceof byte[] && expected instanceof byte[])
                ? Arrays.equals((byte[]) actual, (byte[]) expected)
                : Objects.equals(actual, expected);
        if (!same) {
            throw new AssertionError(what + ": expected " + show(expected) + ", got " + show(actual));
        }
    }

    static String show(Object v) {
        return v instanceof byte[] ? Arrays.toString((byte[]) v) : String.valueOf(v);
    }

    static LocalDate day(int i) {
        return LocalDate.of(2024, 1, i);
    }

    static LocalDateTime at(int i) {
        return LocalDateTime.of(2024, 5, 6, 7, 8, i, i * 1000);
    }

    static byte[] raw(int i) {
        return new byte[] {0, (byte) 0xff, (byte) i, 'a'};
    }

    // Rows 1..20 through a PreparedStatement run once per row (a named
    // server-side statement from the 5th run), rows 21..23 through a
    // Statement batch, rows 24..26 through a PreparedStatement batch (its
    // Describe must answer NoData, or pgjdbc counts 0 rows each and refuses
    // a later executeUpdate of the same SQL); each reports one row.
    static void batchInserts(Connection conn) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT INTO jdbc_check (id, big, score, name, ok, day, at, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")) {
            for (int i = 1; i <= 20; i++) {
                ps.setInt(1, i);
                ps.setLong(2, 10_000_000_000L * i);
                ps.setDouble(3, i * 1.5);
                ps.setString(4, "name-" + i);
                ps.setBoolean(5, i % 2 == 0);
                ps.setObject(6, day(i));
                ps.setObject(7, at(i));
                ps.setBytes(8, raw(i));
                checkEq(ps.executeUpdate(), 1, "prepared insert " + i);
            }
        }
        try (Statement st = conn.createStatement()) {
            for (int i = 21; i <= 23; i++) {
                st.addBatch("INSERT INTO jdbc_check (id, name) VALUES (" + i + ", 'batch-" + i + "')");
            }
            int[] counts = st.executeBatch();
            checkEq(Arrays.toString(counts), "[1, 1, 1]", "statement batch update counts");
        }
        String insert = "INSERT INTO jdbc_check (id, name) VALUES (?, ?)";
        try (PreparedStatement ps = conn.prepareStatement(insert)) {
            for (int i = 24; i <= 26; i++) {
                ps.setInt(1, i);
                ps.setString(2, "prepared-batch-" + i);
                ps.addBatch();
            }
            checkEq(Arrays.toString(ps.executeBatch()), "[1, 1, 1]", "prepared batch update counts");
        }
        try (PreparedStatement ps = conn.prepareStatement(insert)) {
            ps.setInt(1, 27);
            ps.setString(2, "after-the-batch");
            checkEq(ps.executeUpdate(), 1, "the batch's SQL run again with executeUpdate");
        }
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_check")) {
            check(rs.next(), "count row");
            checkEq(rs.getLong(1), 27L, "rows after the batches");
        }
    }

    // pgjdbc switches a PreparedStatement to a named server-side statement
    // (and binary results) from its 5th execution: run it 10 times, with a
    // parameter of each kind, and check every result.
    static void preparedPastThreshold(Connection conn) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT id, big, score, name, ok, day, at, raw FROM jdbc_check "
                        + "WHERE id = ? AND big = ? AND score = ? AND name = ? AND ok = ? AND day = ? AND at = ?")) {
            for (int i = 1; i <= 10; i++) {
                ps.setInt(1, i);
                ps.setLong(2, 10_000_000_000L * i);
                ps.setDouble(3, i * 1.5);
                ps.setString(4, "name-" + i);
                ps.setBoolean(5, i % 2 == 0);
                ps.setObject(6, day(i));
                ps.setObject(7, at(i));
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "prepared run " + i + " returns its row");
                    checkEq(rs.getInt(1), i, "run " + i + " id");
                    checkEq(rs.getLong(2), 10_000_000_000L * i, "run " + i + " big");
                    checkEq(rs.getDouble(3), i * 1.5, "run " + i + " score");
                    checkEq(rs.getString(4), "name-" + i, "run " + i + " name");
                    checkEq(rs.getBoolean(5), i % 2 == 0, "run " + i + " ok");
                    checkEq(rs.getObject(6, LocalDate.class), day(i), "run " + i + " day");
                    checkEq(rs.getObject(7, LocalDateTime.class), at(i), "run " + i + " at");
                    checkEq(rs.getBytes(8), raw(i), "run " + i + " raw");
                    check(!rs.next(), "prepared run " + i + " returns one row");
                }
            }
        }
        // A prepared aggregate with a parameter, past the threshold too.
        try (PreparedStatement ps = conn.prepareStatement("SELECT count(*), sum(big) FROM jdbc_check WHERE id <= ?")) {
            for (int i = 1; i <= 10; i++) {
                ps.setInt(1, i);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "aggregate row");
                    checkEq(rs.getLong(1), (long) i, "count(*) up to " + i);
                    checkEq(rs.getLong(2), 10_000_000_000L * i * (i + 1) / 2, "sum(big) up to " + i);
                }
            }
        }
        // A prepared UPDATE run repeatedly reports its row counts.
        try (PreparedStatement ps = conn.prepareStatement("UPDATE jdbc_check SET name = ? WHERE id = ?")) {
            for (int i = 21; i <= 23; i++) {
                for (int k = 0; k < 3; k++) {
                    ps.setString(1, "renamed-" + i);
                    ps.setInt(2, i);
                    checkEq(ps.executeUpdate(), 1, "update count for id " + i);
                }
            }
        }
    }

    // Each column read through the getter a Java user would use, in text
    // (plain statement) and binary (prepared, forced binary) form, with the
    // JDBC types the driver reports.
    static void resultTypes(Connection conn) throws SQLException {
        String sql = "SELECT id, big, score, name, ok, day, at, raw FROM jdbc_check WHERE id = 7";
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            checkRowSeven(rs, "text");
        }
        Properties binary = new Properties();
        binary.setProperty("prepareThreshold", "-1");
        try (Connection bconn = connect(binary);
                PreparedStatement ps = bconn.prepareStatement(sql);
                ResultSet rs = ps.executeQuery()) {
            checkRowSeven(rs, "binary");
        }
        try (Statement st = conn.createStatement();
                ResultSet rs = st.executeQuery("SELECT id, big, score, name, ok, day, at, raw FROM jdbc_check WHERE id = 21")) {
            check(rs.next(), "row 21");
            checkEq(rs.getString(4), "renamed-21", "updated name");
            rs.getLong(2);
            check(rs.wasNull(), "NULL bigint reads as NULL");
            checkEq(rs.getObject(3), null, "NULL double");
            checkEq(rs.getObject(5), null, "NULL boolean");
            checkEq(rs.getObject(6), null, "NULL date");
            checkEq(rs.getTimestamp(7), null, "NULL timestamp");
            checkEq(rs.getBytes(8), null, "NULL bytea");
        }
    }

    static void checkRowSeven(ResultSet rs, String form) throws SQLException {
        ResultSetMetaData md = rs.getMetaData();
        checkEq(md.getColumnCount(), 8, form + " column count");
        String[] names = {"id", "big", "score", "name", "ok", "day", "at", "raw"};
        int[] types = {Types.INTEGER, Types.BIGINT, Types.DOUBLE, Types.VARCHAR, Types.BIT, Types.DATE,
                Types.TIMESTAMP, Types.BINARY};
        String[] typeNames = {"int4", "int8", "float8", "text", "bool", "date", "timestamp", "bytea"};
        for (int c = 1; c <= 8; c++) {
            checkEq(md.getColumnName(c), names[c - 1], form + " column " + c + " name");
            checkEq(md.getColumnType(c), types[c - 1], form + " column " + c + " JDBC type");
            checkEq(md.getColumnTypeName(c), typeNames[c - 1], form + " column " + c + " type name");
        }
        check(rs.next(), form + ": row 7");
        checkEq(rs.getInt("id"), 7, form + " int");
        checkEq(rs.getObject("id"), 7, form + " int as object");
        checkEq(rs.getLong("big"), 70_000_000_000L, form + " bigint");
        checkEq(rs.getObject("big"), 70_000_000_000L, form + " bigint as object");
        checkEq(rs.getDouble("score"), 10.5, form + " double");
        checkEq(rs.getString("name"), "name-7", form + " text");
        checkEq(rs.getBoolean("ok"), false, form + " boolean");
        checkEq(rs.getObject("ok"), Boolean.FALSE, form + " boolean as object");
        checkEq(rs.getDate("day").toLocalDate(), day(7), form + " date");
        checkEq(rs.getObject("day", LocalDate.class), day(7), form + " date as LocalDate");
        checkEq(rs.getTimestamp("at"), Timestamp.valueOf(at(7)), form + " timestamp");
        checkEq(rs.getObject("at", LocalDateTime.class), at(7), form + " timestamp as LocalDateTime");
        checkEq(rs.getBytes("raw"), raw(7), form + " bytea");
        check(!rs.next(), form + ": one row");
    }

    // DatabaseMetaData runs pgjdbc's own catalog queries (pg_class,
    // pg_namespace, pg_attribute, pg_type, pg_attrdef, pg_description).
    // Not covered: getPrimaryKeys (it calls information_schema._pg_expandarray,
    // which Sluice lacks) and PRIMARY KEY itself (accepted but neither enforced
    // nor recorded in pg_index/pg_constraint).
    static void metadata(Connection conn) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE jdbc_other (id BIGINT, label TEXT)");
        }
        DatabaseMetaData meta = conn.getMetaData();
        List<String> tables = new ArrayList<>();
        try (ResultSet rs = meta.getTables(null, "public", "jdbc_%", new String[] {"TABLE"})) {
            while (rs.next()) {
                checkEq(rs.getString("TABLE_SCHEM"), "public", "getTables schema");
                checkEq(rs.getString("TABLE_TYPE"), "TABLE", "getTables type");
                tables.add(rs.getString("TABLE_NAME"));
            }
        }
        checkEq(tables.toString(), "[jdbc_check, jdbc_other]", "getTables names");
        try (ResultSet rs = meta.getTables(null, "public", "jdbc_missing", null)) {
            check(!rs.next(), "getTables for a missing table is empty");
        }

        String[] names = {"id", "big", "score", "name", "ok", "day", "at", "raw"};
        int[] types = {Types.INTEGER, Types.BIGINT, Types.DOUBLE, Types.VARCHAR, Types.BIT, Types.DATE,
                Types.TIMESTAMP, Types.BINARY};
        String[] typeNames = {"int4", "int8", "float8", "text", "bool", "date", "timestamp", "bytea"};
        int n = 0;
        try (ResultSet rs = meta.getColumns(null, "public", "jdbc_check", "%")) {
            while (rs.next()) {
                checkEq(rs.getString("TABLE_NAME"), "jdbc_check", "getColumns table");
                checkEq(rs.getInt("ORDINAL_POSITION"), n + 1, "getColumns position");
                checkEq(rs.getString("COLUMN_NAME"), names[n], "getColumns name " + (n + 1));
                checkEq(rs.getInt("DATA_TYPE"), types[n], "getColumns DATA_TYPE of " + names[n]);
                checkEq(rs.getString("TYPE_NAME"), typeNames[n], "getColumns TYPE_NAME of " + names[n]);
                checkEq(rs.getString("IS_NULLABLE"), "YES", "getColumns IS_NULLABLE of " + names[n]);
                n++;
            }
        }
        checkEq(n, 8, "getColumns count");
        try (ResultSet rs = meta.getColumns(null, "public", "jdbc_other", "label")) {
            check(rs.next(), "getColumns with a column pattern");
            checkEq(rs.getString("COLUMN_NAME"), "label", "getColumns single column");
            checkEq(rs.getInt("ORDINAL_POSITION"), 2, "getColumns single column position");
            checkEq(rs.getInt("DATA_TYPE"), Types.VARCHAR, "getColumns single column type");
            check(!rs.next(), "getColumns with a column pattern: one row");
        }
    }

    static void errors(Connection conn) throws SQLException {
        try (Statement st = conn.createStatement()) {
            try {
                st.executeQuery("SELECT * FROM jdbc_missing");
                throw new AssertionError("expected an error for an undefined table");
            } catch (SQLException e) {
                checkEq(e.getSQLState(), "42P01", "undefined table SQLSTATE (" + e.getMessage() + ")");
            }
            // The same through a PreparedStatement.
            try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM jdbc_missing WHERE id = ?")) {
                ps.setInt(1, 1);
                ps.executeQuery();
                throw new AssertionError("expected an error for an undefined table (prepared)");
            } catch (SQLException e) {
                checkEq(e.getSQLState(), "42P01", "prepared undefined table SQLSTATE (" + e.getMessage() + ")");
            }
            try {
                st.executeQuery("SELECT 1 / 0");
                throw new AssertionError("expected a division by zero");
            } catch (SQLException e) {
                checkEq(e.getSQLState(), "22012", "division by zero SQLSTATE (" + e.getMessage() + ")");
            }
            // The connection goes on after errors in autocommit mode.
            try (ResultSet rs = st.executeQuery("SELECT 42")) {
                check(rs.next(), "row after errors");
                checkEq(rs.getInt(1), 42, "query after errors");
            }
        }
    }

    static void transactions() throws SQLException {
        try (Connection conn = connect(new Properties()); Connection other = connect(new Properties())) {
            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                checkEq(st.executeUpdate("INSERT INTO jdbc_check (id, name) VALUES (100, 'committed')"), 1,
                        "insert in a transaction");
                try (ResultSet rs = st.executeQuery("SELECT name FROM jdbc_check WHERE id = 100")) {
                    check(rs.next(), "own write visible inside the transaction");
                    checkEq(rs.getString(1), "committed", "own write");
                }
            }
            conn.commit();
            try (Statement st = other.createStatement();
                    ResultSet rs = st.executeQuery("SELECT name FROM jdbc_check WHERE id = 100")) {
                check(rs.next(), "committed row visible to another connection");
                checkEq(rs.getString(1), "committed", "committed row");
            }

            // A failed statement inside a transaction, then rollback: the
            // connection is usable afterwards.
            try (Statement st = conn.createStatement()) {
                try (ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_check")) {
                    check(rs.next(), "count in the second transaction");
                }
                try {
                    st.executeQuery("SELECT * FROM jdbc_missing");
                    throw new AssertionError("expected an error inside the transaction");
                } catch (SQLException e) {
                    checkEq(e.getSQLState(), "42P01", "undefined table inside a transaction");
                }
                try {
                    st.executeQuery("SELECT 1");
                    throw new AssertionError("expected the aborted transaction to refuse statements");
                } catch (SQLException e) {
                    checkEq(e.getSQLState(), "25P02", "statement in an aborted transaction (" + e.getMessage() + ")");
                }
            }
            conn.rollback();
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_check")) {
                check(rs.next(), "count after rollback");
                checkEq(rs.getLong(1), 28L, "rows after rollback");
            }
            conn.commit();
            conn.setAutoCommit(true);
            try (PreparedStatement ps = conn.prepareStatement("SELECT name FROM jdbc_check WHERE id = ?")) {
                ps.setInt(1, 100);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "prepared query after the rollback");
                    checkEq(rs.getString(1), "committed", "prepared query after the rollback");
                }
            }
        }
    }
}
