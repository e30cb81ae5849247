"""sqlite3 (the CLI and Python's module) with its database under the prefix: rollback journal and
WAL mode (mmap'ed -shm file, fcntl locks, fsync, journal create/delete).  Shim vs tmpfs oracle."""


def test_sqlite3_cli_create_insert_select_rollback_journal(sc):
    sc.compare(sc.shell('''
db=$P/data/app.db
mkdir -p $P/data
sqlite3 $db "create table t(id integer primary key, name text, blob blob);
  insert into t(name, blob) values ('a', zeroblob(1000)), ('b', zeroblob(5000));"
sqlite3 $db "begin; insert into t(name) select 'n' || value from generate_series(1, 2000); commit;"
sqlite3 $db "select count(*), sum(length(blob)) from t; select name from t where id <= 3 order by id;"
sqlite3 $db "pragma integrity_check; pragma journal_mode;"
sqlite3 $db "create index i on t(name); delete from t where id % 2 = 0; vacuum;"
sqlite3 $db "select count(*) from t;"
sqlite3 $P/data/nope/x.db "select 1;" 2>&1; echo "rc=$?"
cd $P/data && sqlite3 rel.db "create table r(x); insert into r values (42); select x from r;"
ls $P/data
'''))


def test_sqlite3_wal_mode_and_checkpoint(sc):
    sc.compare(sc.shell('''
db=$P/wal.db
sqlite3 $db "pragma journal_mode=wal; create table kv(k text primary key, v text);"
for i in 1 2 3 4 5; do sqlite3 $db "insert into kv values ('k$i', 'v$i');"; done
sqlite3 $db "pragma journal_mode; select count(*), group_concat(v) from kv;"
ls $P
$PY - "$db" <<'PYEOF'
import os, sqlite3, sys
db = sys.argv[1]
a = sqlite3.connect(db); b = sqlite3.connect(db)
a.execute("insert into kv values ('py', 'from a')"); a.commit()
print("b sees a:", b.execute("select v from kv where k = 'py'").fetchone())
print("wal files while open:", sorted(f for f in os.listdir(os.path.dirname(db)) if f.startswith("wal.db")))
print("wal size > 0:", os.path.getsize(db + "-wal") > 0, "shm size:", os.path.getsize(db + "-shm"))
print("checkpoint:", a.execute("pragma wal_checkpoint(truncate)").fetchone())
print("wal size after checkpoint:", os.path.getsize(db + "-wal"))
a.close(); b.close()
print("after close:", sorted(os.listdir(os.path.dirname(db))))
PYEOF
sqlite3 $db "pragma integrity_check; select count(*) from kv;"
'''), check_tree=True)
