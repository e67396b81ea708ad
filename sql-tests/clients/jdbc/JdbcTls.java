// One pgjdbc connection for tls_check.py: connects to the URL given (its
// sslmode, sslrootcert… in the URL), runs SELECT 6 * 7 and prints what
// happened. Expected outcome as the second argument: `ok`, or
// `refused:SQLSTATE` (the connection must fail with that SQLSTATE).
// Exits non-zero when the outcome differs.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class JdbcTls {
    public static void main(String[] args) {
        String url = args[0];
        String expected = args[1];
        try (Connection connection = DriverManager.getConnection(url, "sluice", "");
             Statement statement = connection.createStatement();
             ResultSet rows = statement.executeQuery("SELECT 6 * 7")) {
            rows.next();
            int value = rows.getInt(1);
            if (!expected.equals("ok") || value != 42) {
                System.out.println("connected and got " + value + "; expected " + expected);
                System.exit(1);
            }
            System.out.println("SELECT 6 * 7 = " + value);
        } catch (SQLException e) {
            if (expected.equals("refused:" + e.getSQLState())) {
                System.out.println("refused with " + e.getSQLState() + ": " + e.getMessage());
                return;
            }
            System.out.println("failed with " + e.getSQLState() + ": " + e.getMessage()
                + "; expected " + expected);
            System.exit(1);
        }
    }
}
