// node-postgres (npm `pg`) against a running `sluice serve`: untyped
// parameters from JS values, named prepared statements, result type
// parsing, errors with SQLSTATE, transactions and a pool.
//
// Usage: node pg_check.js HOST PORT   (after `npm ci` in this directory)
// Exits non-zero on the first failed check.
'use strict';

// node-postgres reads DATE and TIMESTAMP (without time zone) as local time
// and sends a Date as local time with its offset: pin the zone so the
// expected values below are the same on every machine.
process.env.TZ = 'UTC';

const assert = require('node:assert/strict');
const pg = require('pg');

const [host, portArg] = process.argv.slice(2);
if (!host || !portArg) {
  console.error('usage: node pg_check.js HOST PORT');
  process.exit(2);
}
const config = { host, port: Number(portArg), user: 'sluice', database: 'sluice' };

async function expectError(promise, code, what) {
  try {
    await promise;
  } catch (err) {
    assert.equal(err.code, code, `${what}: SQLSTATE (${err.message})`);
    return err;
  }
  assert.fail(`${what}: expected an error with SQLSTATE ${code}`);
}

async function main() {
  const client = new pg.Client(config);
  await client.connect();
  try {
    await checkSession(client);
    await checkParameters(client);
    await checkNamedPrepared(client);
    await checkResultTypes(client);
    await checkErrors(client);
    await checkTransactions(client);
  } finally {
    await client.end();
  }
  await checkPool();
  console.log('pg (node-postgres) checks passed');
}

async function checkSession(client) {
  const version = await client.query('SHOW server_version');
  assert.match(version.rows[0].server_version, /^15/, 'server_version');
}

const at = (i) => new Date(Date.UTC(2024, 4, 6, 7, 8, i, 123));
const day = (i) => new Date(Date.UTC(2024, 0, i));

// Parameters go out untyped (OID 0) as text; the server infers each type
// from where the parameter stands.
async function checkParameters(client) {
  await client.query(
    'CREATE TABLE node_check (id INT, big BIGINT, score DOUBLE PRECISION, name TEXT, ok BOOLEAN, ' +
      'day DATE, at TIMESTAMP, raw BYTEA)',
  );
  for (let i = 1; i <= 5; i++) {
    const res = await client.query(
      'INSERT INTO node_check (id, big, score, name, ok, day, at, raw) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
      [i, 10_000_000_000 * i, i * 1.5, `name-${i}`, i % 2 === 0, `2024-01-0${i}`, at(i), Buffer.from([0, 255, i])],
    );
    assert.equal(res.command, 'INSERT', 'insert command tag');
    assert.equal(res.rowCount, 1, 'insert row count');
  }
  // A row of NULLs from JS null and undefined.
  const nulls = await client.query(
    'INSERT INTO node_check (id, big, score, name, ok, day, at, raw) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
    [6, null, null, null, undefined, null, null, null],
  );
  assert.equal(nulls.rowCount, 1, 'insert of NULLs');

  const point = await client.query('SELECT name FROM node_check WHERE id = $1 AND ok = $2', [4, true]);
  assert.deepEqual(point.rows, [{ name: 'name-4' }], 'point query with number and boolean parameters');
  const byText = await client.query('SELECT id FROM node_check WHERE name = $1', ['name-3']);
  assert.deepEqual(byText.rows, [{ id: 3 }], 'query with a string parameter');
  const byDate = await client.query('SELECT id FROM node_check WHERE at = $1', [at(2)]);
  assert.deepEqual(byDate.rows, [{ id: 2 }], 'query with a Date parameter');
  const byBig = await client.query('SELECT id FROM node_check WHERE big = $1', ['50000000000']);
  assert.deepEqual(byBig.rows, [{ id: 5 }], 'bigint compared with a string parameter');
  const range = await client.query('SELECT count(*) AS n FROM node_check WHERE score > $1 AND score < $2', [1.4, 6]);
  assert.deepEqual(range.rows, [{ n: '3' }], 'float parameters');
  const isNull = await client.query('SELECT id FROM node_check WHERE name IS NULL');
  assert.deepEqual(isNull.rows, [{ id: 6 }], 'NULL row');
  // Parameters with no context are text; casts give them a type.
  const untyped = await client.query('SELECT $1 AS v', ['hello']);
  assert.deepEqual(untyped.rows, [{ v: 'hello' }], 'parameter without context is text');
  const cast = await client.query('SELECT $1::int + $2::int AS sum', [40, 2]);
  assert.deepEqual(cast.rows, [{ sum: 42 }], 'cast parameters');
  const upd = await client.query('UPDATE node_check SET name = $1 WHERE id = $2', ['renamed', 6]);
  assert.equal(upd.command, 'UPDATE', 'update command tag');
  assert.equal(upd.rowCount, 1, 'update row count');
}

// A named query is parsed once per connection and then only bound and run.
async function checkNamedPrepared(client) {
  for (let round = 0; round < 3; round++) {
    for (let i = 1; i <= 5; i++) {
      const res = await client.query({
        name: 'node-by-id',
        text: 'SELECT id, name, score FROM node_check WHERE id = $1',
        values: [i],
      });
      assert.deepEqual(res.rows, [{ id: i, name: `name-${i}`, score: i * 1.5 }], `named query, id ${i}`);
    }
  }
  for (let i = 1; i <= 5; i++) {
    const res = await client.query({
      name: 'node-count-below',
      text: 'SELECT count(*) AS n, sum(big) AS total FROM node_check WHERE id <= $1',
      values: [i],
    });
    assert.deepEqual(
      res.rows,
      [{ n: String(i), total: String((10_000_000_000 * i * (i + 1)) / 2) }],
      `named aggregate up to ${i}`,
    );
  }
  // rowMode 'array' through a named query.
  const arr = await client.query({
    name: 'node-array',
    text: 'SELECT id, ok FROM node_check WHERE id = $1',
    values: [2],
    rowMode: 'array',
  });
  assert.deepEqual(arr.rows, [[2, true]], 'array row mode');
}

// node-postgres parses text results by type OID: int4 and float8 to
// numbers, int8 and count(*) to strings, bool to booleans, timestamp and
// date to Date, bytea to Buffer.
async function checkResultTypes(client) {
  const res = await client.query('SELECT id, big, score, name, ok, day, at, raw FROM node_check WHERE id = 3');
  const oids = res.fields.map((f) => [f.name, f.dataTypeID]);
  assert.deepEqual(
    oids,
    [['id', 23], ['big', 20], ['score', 701], ['name', 25], ['ok', 16], ['day', 1082], ['at', 1114], ['raw', 17]],
    'field type OIDs',
  );
  const row = res.rows[0];
  assert.equal(row.id, 3, 'int4 as number');
  assert.equal(typeof row.id, 'number');
  assert.equal(row.big, '30000000000', 'int8 as string');
  assert.equal(row.score, 4.5, 'float8 as number');
  assert.equal(row.name, 'name-3', 'text');
  assert.equal(row.ok, false, 'bool');
  assert.ok(row.day instanceof Date, 'date as Date');
  assert.equal(row.day.getTime(), day(3).getTime(), 'date value');
  assert.ok(row.at instanceof Date, 'timestamp as Date');
  assert.equal(row.at.toISOString(), at(3).toISOString(), 'timestamp value');
  assert.ok(Buffer.isBuffer(row.raw), 'bytea as Buffer');
  assert.deepEqual([...row.raw], [0, 255, 3], 'bytea value');

  const nulls = await client.query('SELECT big, score, ok, day, at, raw FROM node_check WHERE id = 6');
  assert.deepEqual(nulls.rows, [{ big: null, score: null, ok: null, day: null, at: null, raw: null }], 'NULLs');

  const exprs = await client.query(
    "SELECT CAST(2147483647 AS INT) AS i4, 9007199254740993::bigint AS i8, 0.25::float8 AS f, 1 < 2 AS b, " +
      "TIMESTAMP '2024-02-29 23:59:58.5' AS ts, 'x' || 'y' AS t",
  );
  assert.deepEqual(
    exprs.rows[0],
    {
      i4: 2147483647,
      i8: '9007199254740993',
      f: 0.25,
      b: true,
      ts: new Date(Date.UTC(2024, 1, 29, 23, 59, 58, 500)),
      t: 'xy',
    },
    'expression result types',
  );
}

async function checkErrors(client) {
  const missing = await expectError(client.query('SELECT * FROM node_missing'), '42P01', 'undefined table');
  assert.equal(missing.severity, 'ERROR', 'error severity');
  await expectError(
    client.query({ name: 'node-missing', text: 'SELECT * FROM node_missing WHERE id = $1', values: [1] }),
    '42P01',
    'undefined table in a named query',
  );
  await expectError(client.query('SELECT 1 / 0'), '22012', 'division by zero');
  await expectError(client.query('SELEC 1'), '42601', 'syntax error');
  // The client goes on after errors.
  const after = await client.query('SELECT $1::int AS v', [7]);
  assert.deepEqual(after.rows, [{ v: 7 }], 'query after errors');
}

async function checkTransactions(client) {
  const other = new pg.Client(config);
  await other.connect();
  try {
    const begin = await client.query('BEGIN');
    assert.equal(begin.command, 'BEGIN', 'BEGIN tag');
    await client.query('INSERT INTO node_check (id, name) VALUES ($1, $2)', [100, 'committed']);
    const own = await client.query('SELECT name FROM node_check WHERE id = 100');
    assert.deepEqual(own.rows, [{ name: 'committed' }], 'own write inside the transaction');
    const commit = await client.query('COMMIT');
    assert.equal(commit.command, 'COMMIT', 'COMMIT tag');
    const seen = await other.query('SELECT name FROM node_check WHERE id = $1', [100]);
    assert.deepEqual(seen.rows, [{ name: 'committed' }], 'committed row seen by another connection');

    // A failed statement aborts the transaction; ROLLBACK ends it and the
    // client goes on.
    await client.query('BEGIN');
    await client.query('SELECT count(*) FROM node_check');
    await expectError(client.query('SELECT * FROM node_missing'), '42P01', 'error inside a transaction');
    await expectError(client.query('SELECT 1'), '25P02', 'statement in an aborted transaction');
    const rollback = await client.query('ROLLBACK');
    assert.equal(rollback.command, 'ROLLBACK', 'ROLLBACK tag');
    const count = await client.query('SELECT count(*) AS n FROM node_check');
    assert.deepEqual(count.rows, [{ n: '7' }], 'rows after the rollback');
    const named = await client.query({
      name: 'node-by-id',
      text: 'SELECT id, name, score FROM node_check WHERE id = $1',
      values: [100],
    });
    assert.deepEqual(named.rows, [{ id: 100, name: 'committed', score: null }], 'named query after the rollback');

    // ROLLBACK undoes the transaction's writes, silently.
    const notices = [];
    client.on('notice', (n) => notices.push(n));
    await client.query('BEGIN');
    await client.query('INSERT INTO node_check (id, name) VALUES ($1, $2)', [101, 'written']);
    const inside = await client.query('SELECT count(*) AS n FROM node_check WHERE id = 101');
    assert.deepEqual(inside.rows, [{ n: '1' }], 'own write visible inside the transaction');
    const outside = await other.query('SELECT count(*) AS n FROM node_check WHERE id = 101');
    assert.deepEqual(outside.rows, [{ n: '0' }], 'uncommitted write invisible to another client');
    await client.query('ROLLBACK');
    const after = await client.query('SELECT count(*) AS n FROM node_check WHERE id = 101');
    assert.deepEqual(after.rows, [{ n: '0' }], 'rolled-back write gone');
    assert.equal(notices.length, 0, 'no notice for a rollback');
  } finally {
    await other.end();
  }
}

// A pool of 4 connections serving 12 concurrent queries, parameterised and
// named, plus a transaction on a checked-out client.
async function checkPool() {
  const pool = new pg.Pool({ ...config, max: 4 });
  try {
    const ids = Array.from({ length: 12 }, (_, k) => (k % 5) + 1);
    const results = await Promise.all(
      ids.map((id, k) =>
        k % 2 === 0
          ? pool.query('SELECT id, name FROM node_check WHERE id = $1', [id])
          : pool.query({ name: 'node-pool-by-id', text: 'SELECT id, name FROM node_check WHERE id = $1', values: [id] }),
      ),
    );
    results.forEach((res, k) => {
      assert.deepEqual(res.rows, [{ id: ids[k], name: `name-${ids[k]}` }], `pool query ${k}`);
    });
    assert.ok(pool.totalCount <= 4, `pool size ${pool.totalCount}`);
    assert.ok(pool.totalCount > 1, `queries ran on several connections (${pool.totalCount})`);

    const conn = await pool.connect();
    try {
      await conn.query('BEGIN');
      await conn.query('INSERT INTO node_check (id, name) VALUES ($1, $2)', [200, 'pooled']);
      await conn.query('COMMIT');
    } finally {
      conn.release();
    }
    const inserted = await Promise.all([1, 2, 3].map(() => pool.query('SELECT name FROM node_check WHERE id = 200')));
    inserted.forEach((res) => assert.deepEqual(res.rows, [{ name: 'pooled' }], 'pooled insert seen by the pool'));
    await expectError(pool.query('SELECT * FROM node_missing'), '42P01', 'pool error');
    const after = await pool.query('SELECT count(*) AS n FROM node_check');
    assert.deepEqual(after.rows, [{ n: '8' }], 'pool after an error');
  } finally {
    await pool.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
