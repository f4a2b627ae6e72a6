// Package ship sends the trace journal's records to the site's SIEM, at least once: every
// record reaches every configured sink, in journal order, possibly more than once, never
// not at all as long as the journal keeps it.
//
// It is not linked into the hook: the hook only appends to the journal, and shipping
// happens after the fact (`vmgate ship`), so an unreachable SIEM never delays or refuses a
// VM start.
//
// # Cursors
//
// Each sink has a cursor, <state_dir>/trace/cursors/<sink>: the seq and hash of the last
// record the sink accepted, as one JSON line, replaced atomically (written beside, synced,
// renamed). Retention reads it (ReadCursor) to prune only what every sink has. The hash lets
// a pass notice a journal that no longer continues the cursor (replaced, restored from a
// backup, recreated): it then logs an error and ships that journal from its start again. A
// cursor moves only after the sink accepted everything up to it; after any failure the next
// pass sends again from the cursor, so records may arrive twice (the SIEM can drop
// duplicates by seq and hash) but none is skipped. <sink>.lock beside it keeps two vmgate
// processes from shipping to one sink at once (sink names have no dot, so the names never
// clash).
//
// # What "accepted" means
//
// For a jsonfile sink: the lines were written and fsync'd. For syslog over TCP or TLS there
// is no acknowledgement in the protocol (RFC 5425, RFC 6587), and a write that returns
// without an error means only that the local kernel took the bytes: when the receiver has
// gone away the error shows up on a later write, or never. Moving a cursor on a successful
// write would lose whatever was in flight when the receiver died. So records are sent in
// sessions, one connection each (at most Options.SessionRecords records), and a session
// counts as accepted only when it ends cleanly: we flush, end our side (TLS close_notify and
// a TCP FIN), and wait for the receiver to close its side after reading up to our end, with
// the receiver's kernel having acknowledged every byte we sent (Linux SIOCOUTQ is zero). A
// receiver that closes without reading all of it resets the connection instead, and the
// session fails. Any error at any point, on a write, on the flush or while waiting, fails
// the whole session: nothing since the cursor counts as sent, and the next pass sends it
// all again over a new connection. A receiver that never closes but has acknowledged every
// byte within Options.ConfirmTimeout is taken to have accepted them.
//
// What a receiver does after reading is out of our sight: rsyslog with in-memory queues
// loses what it read but did not yet write when it is killed. Give the receiver a
// disk-assisted queue (or a direct one) where that matters.
//
// # Messages
//
// Each record is one RFC 5424 message with octet-counting framing (`LEN SP MSG`, RFC 6587
// section 3.4.1 and RFC 5425 section 4.3):
//
//		<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [vmgate@32473 seq=".." hash=".." …] {ECS JSON}
//
//	  - PRI: facility authpriv (10): the records name users, projects and addresses, and
//	    authpriv is the facility receivers keep away from general logs. Severity by event:
//	    warning (4) for admission.refuse and list.refused and any other failure outcome,
//	    notice (5) for admission.warn, image.revoked and vm.terminated, info (6) for the rest.
//	  - TIMESTAMP: the record's time in UTC, to the microsecond (RFC 5424 allows six
//	    fraction digits; the MSG carries the nanoseconds).
//	  - HOSTNAME: the record's host; APP-NAME: the sink's app_name; PROCID: "-" (the process
//	    that wrote the record is long gone); MSGID: the event, e.g. admission.allow.
//	  - Structured data, SD-ID vmgate@32473: 32473 is the private enterprise number that
//	    RFC 5612 reserves for documentation. It is a placeholder until vmgate has a PEN of its
//	    own from IANA; change SDID then (receivers' parsing rules name it). Parameters, in this
//	    order, empty ones left out: seq, hash, prev (the journal's chain, so the SIEM's copy
//	    can be checked against the node's), event, outcome, domain, domain_uuid, instance,
//	    user, project (ids), image_sha512 and ips (comma-separated when there are several).
//	    `"`, `\` and `]` in values are escaped with a backslash, as RFC 5424 requires.
//	  - MSG: the record as one line of Elastic Common Schema JSON, the same document a
//	    jsonfile sink writes, with no BOM (RFC 5424 MSG-ANY), because SIEMs parse the MSG as
//	    JSON and a BOM trips them. A record is typically 1 to 2 KB; receivers should accept
//	    messages of 64 KiB (rsyslog: global(maxMessageSize="64k"); its default is 8 KiB).
package ship
