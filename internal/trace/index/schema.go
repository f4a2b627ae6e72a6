package index

// schemaVersion names the layout below. An index with another version (or none) is built
// again from the journal: the index is a cache, the journal is the record.
const schemaVersion = "1"

// tables are created empty; indexes come separately so that a rebuild can load the rows
// first and sort each index once, which is several times faster than keeping them up to
// date row by row.
//
// Absent values are NULL, so that `col = ?` never matches a record that lacks the field.
// Times are Unix nanoseconds (UTC).
var tables = []string{
	`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`,

	// One row per journal record, with the fields queries select on.
	`CREATE TABLE IF NOT EXISTS records (
		seq          INTEGER PRIMARY KEY,
		time         INTEGER NOT NULL,
		host         TEXT,
		event        TEXT,
		outcome      TEXT,
		domain_name  TEXT,
		domain_uuid  TEXT,
		instance_id  TEXT,
		user_id      TEXT,
		user_name    TEXT,
		project_id   TEXT,
		project_name TEXT,
		reason       TEXT,
		hash         TEXT NOT NULL,
		prev         TEXT NOT NULL
	)`,
	// The record's data, its JSON as the journal holds it, which is what queries return.
	// Kept out of records, where it would triple the pages every index build and every
	// scan of records reads.
	`CREATE TABLE IF NOT EXISTS record_data (seq INTEGER PRIMARY KEY, raw TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS record_ips (ip TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (ip, seq)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS record_macs (mac TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (mac, seq)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS record_images (seq INTEGER NOT NULL, sha512 TEXT, glance_id TEXT, identifier TEXT)`,

	// A VM's lifetime on a host: from the record that started it (vm.started, or
	// vm.reconnected when the start was not seen) to the one that ended it (NULL while it
	// runs). dkey is the domain uuid, or "name:" and the name when a record has no uuid.
	`CREATE TABLE IF NOT EXISTS lifetimes (
		id            INTEGER PRIMARY KEY,
		host          TEXT NOT NULL,
		dkey          TEXT NOT NULL,
		domain_name   TEXT,
		domain_uuid   TEXT,
		instance_id   TEXT,
		instance_name TEXT,
		user_id       TEXT,
		user_name     TEXT,
		project_id    TEXT,
		project_name  TEXT,
		admission_seq INTEGER,
		start_seq     INTEGER NOT NULL,
		start_time    INTEGER NOT NULL,
		start_event   TEXT NOT NULL,
		end_seq       INTEGER,
		end_time      INTEGER,
		end_event     TEXT
	)`,
	`CREATE TABLE IF NOT EXISTS lifetime_ips (ip TEXT NOT NULL, lifetime INTEGER NOT NULL, type TEXT, PRIMARY KEY (ip, lifetime)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS lifetime_macs (mac TEXT NOT NULL, lifetime INTEGER NOT NULL, PRIMARY KEY (mac, lifetime)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS lifetime_images (lifetime INTEGER NOT NULL, sha512 TEXT, glance_id TEXT, identifier TEXT, title TEXT, version TEXT)`,
	// Finds the open lifetime of a domain while records are indexed, so it is kept from the
	// start even in a rebuild; it holds only the lifetimes still open.
	`CREATE INDEX IF NOT EXISTS lifetimes_open ON lifetimes (host, dkey) WHERE end_seq IS NULL`,
	// Each lifetime's span in whole minutes, rounded outwards, with the largest value while it
	// is open: an R*Tree finds the few spans that contain an instant without reading every
	// lifetime that began before it. The exact times are checked in lifetimes.
	`CREATE VIRTUAL TABLE IF NOT EXISTS lifetime_spans USING rtree_i32 (id, from_min, until_min)`,
	// An admission that allowed a start whose vm.started has not come yet.
	`CREATE TABLE IF NOT EXISTS pending (host TEXT NOT NULL, dkey TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (host, dkey)) WITHOUT ROWID`,
}

// indexes serve the filters of Query; the WITHOUT ROWID primary keys above serve --ip and
// --mac.
var indexes = []string{
	`CREATE INDEX IF NOT EXISTS records_time ON records (time)`,
	`CREATE INDEX IF NOT EXISTS records_domain_name ON records (domain_name)`,
	`CREATE INDEX IF NOT EXISTS records_domain_uuid ON records (domain_uuid)`,
	`CREATE INDEX IF NOT EXISTS records_instance ON records (instance_id)`,
	`CREATE INDEX IF NOT EXISTS records_user_id ON records (user_id)`,
	`CREATE INDEX IF NOT EXISTS records_user_name ON records (user_name)`,
	`CREATE INDEX IF NOT EXISTS records_project_id ON records (project_id)`,
	`CREATE INDEX IF NOT EXISTS records_project_name ON records (project_name)`,
	`CREATE INDEX IF NOT EXISTS record_images_seq ON record_images (seq)`,
	`CREATE INDEX IF NOT EXISTS record_images_sha512 ON record_images (sha512)`,
	`CREATE INDEX IF NOT EXISTS record_images_glance ON record_images (glance_id)`,
	`CREATE INDEX IF NOT EXISTS record_images_identifier ON record_images (identifier)`,

	`CREATE INDEX IF NOT EXISTS lifetimes_start ON lifetimes (start_time)`,
	`CREATE INDEX IF NOT EXISTS lifetimes_domain_name ON lifetimes (domain_name)`,
	`CREATE INDEX IF NOT EXISTS lifetimes_domain_uuid ON lifetimes (domain_uuid)`,
	`CREATE INDEX IF NOT EXISTS lifetimes_instance ON lifetimes (instance_id)`,
	`CREATE INDEX IF NOT EXISTS lifetimes_user_id ON lifetimes (user_id)`,
	`CREATE INDEX IF NOT EXISTS lifetimes_user_name ON lifetimes (user_name)`,
	`CREATE INDEX IF NOT EXISTS lifetimes_project_id ON lifetimes (project_id)`,
	`CREATE INDEX IF NOT EXISTS lifetimes_project_name ON lifetimes (project_name)`,
	`CREATE INDEX IF NOT EXISTS lifetime_ips_lifetime ON lifetime_ips (lifetime)`,
	`CREATE INDEX IF NOT EXISTS lifetime_macs_lifetime ON lifetime_macs (lifetime)`,
	`CREATE INDEX IF NOT EXISTS lifetime_images_lifetime ON lifetime_images (lifetime)`,
	`CREATE INDEX IF NOT EXISTS lifetime_images_sha512 ON lifetime_images (sha512)`,
	`CREATE INDEX IF NOT EXISTS lifetime_images_glance ON lifetime_images (glance_id)`,
	`CREATE INDEX IF NOT EXISTS lifetime_images_identifier ON lifetime_images (identifier)`,
}

// dropAll empties the index for a rebuild: indexes go with their tables.
var dropAll = []string{
	`DROP TABLE IF EXISTS records`,
	`DROP TABLE IF EXISTS record_data`,
	`DROP TABLE IF EXISTS record_ips`,
	`DROP TABLE IF EXISTS record_macs`,
	`DROP TABLE IF EXISTS record_images`,
	`DROP TABLE IF EXISTS lifetimes`,
	`DROP TABLE IF EXISTS lifetime_ips`,
	`DROP TABLE IF EXISTS lifetime_macs`,
	`DROP TABLE IF EXISTS lifetime_images`,
	`DROP TABLE IF EXISTS lifetime_spans`,
	`DROP TABLE IF EXISTS pending`,
	`DELETE FROM meta`,
}
