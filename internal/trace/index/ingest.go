package index

import (
	"context"
	"database/sql"
	"encoding/json"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/trace"
)

// ingester adds journal records to the index inside one transaction and derives the VM
// lifetimes from them as it goes.
//
// Lifetimes, per host and domain (uuid, or name when a record has none):
//   - admission.allow or admission.warn (and vm.migrated_in, vm.restored when they come)
//     is remembered as pending: it names the image and owner of the start that follows;
//   - vm.started opens a lifetime with what it and the pending admission say; a start while
//     one is open ends that one first (its stop was never recorded: a host crash);
//   - vm.reconnected (libvirtd restarting) continues the open lifetime, or opens one when
//     none is, since the VM is running then even if its start was not seen;
//   - vm.stopped and vm.released end it. vm.terminated does not: `vmgate terminate` may
//     only suspend or lock the VM, which then still holds its addresses, and may run on
//     another host than the VM's; when the VM does stop, the hook records vm.stopped;
//   - admission.refuse, and a stop or release without a start, forget the pending
//     admission: a refused or failed start never makes a lifetime.
//
// Every record of a domain while its lifetime is open adds its addresses to it, and fills
// the owner and image fields it still lacks.
type ingester struct {
	ctx   context.Context
	tx    *sql.Tx
	fresh bool // the tables were empty at the start: no state to look up

	stmt   map[string]*sql.Stmt
	bulk   map[string]*bulk
	keys   map[dkey]*keyState
	nextID int64 // of the next new lifetime

	n        int
	lastSeq  uint64
	lastHash string
}

type dkey struct{ host, domain string }

// keyState is what the ingester knows of one domain on one host.
type keyState struct {
	pending   *admission // the allowed admission whose start has not come
	pendingDB bool       // the pending table holds a row for the key
	open      *lifetime
}

type admission struct {
	seq uint64
	rec trace.Record
}

// lifetime is one row of lifetimes and its addresses and images, as far as this ingester
// has them: for a lifetime read back from the index only the row, since the tables add
// addresses with INSERT OR IGNORE and images only to a lifetime that has none.
type lifetime struct {
	id                     int64
	stored                 bool // its row is in the index: change it with an UPDATE
	host, dkey             string
	domainName, domainUUID string
	instanceID, instName   string
	userID, userName       string
	projectID, projectName string
	admissionSeq           uint64
	startSeq               uint64
	startTime              time.Time
	startEvent             string
	endSeq                 uint64
	endTime                time.Time
	endEvent               string

	ips        []trace.IP
	macs       []string
	images     []trace.Image
	hasImages  bool // the index holds images for it already
	ipsDone    int  // ips[:ipsDone] are in the index
	macsDone   int
	imagesDone bool
}

// statements are the ones run a row at a time: lookups, and changes to what an earlier
// Update stored.
var statements = map[string]string{
	"lt_update": `UPDATE lifetimes SET domain_name = ?, domain_uuid = ?, instance_id = ?, instance_name = ?,
		user_id = ?, user_name = ?, project_id = ?, project_name = ?, end_seq = ?, end_time = ?, end_event = ?
		WHERE id = ?`,
	"span_update": `UPDATE lifetime_spans SET until_min = ? WHERE id = ?`,
	"lt_open": `SELECT id, domain_name, domain_uuid, instance_id, instance_name, user_id, user_name,
		project_id, project_name, admission_seq, start_seq, start_time, start_event,
		EXISTS (SELECT 1 FROM lifetime_images WHERE lifetime = lifetimes.id)
		FROM lifetimes WHERE host = ? AND dkey = ? AND end_seq IS NULL ORDER BY start_seq DESC LIMIT 1`,
	"pending_get": `SELECT p.seq, d.raw FROM pending p JOIN record_data d ON d.seq = p.seq WHERE p.host = ? AND p.dkey = ?`,
	"pending_put": `INSERT OR REPLACE INTO pending (host, dkey, seq) VALUES (?, ?, ?)`,
	"pending_del": `DELETE FROM pending WHERE host = ? AND dkey = ?`,
}

// The rows of new records and lifetimes go in many at a time: one INSERT of 32 rows costs
// about what four of one row do.
func newBulks() map[string]*bulk {
	return map[string]*bulk{
		"record": {insert: "INSERT INTO records (seq, time, host, event, outcome, domain_name, domain_uuid, instance_id, " +
			"user_id, user_name, project_id, project_name, reason, hash, prev)", cols: 15},
		"record_data":  {insert: "INSERT INTO record_data (seq, raw)", cols: 2},
		"record_ip":    {insert: "INSERT OR IGNORE INTO record_ips (ip, seq)", cols: 2},
		"record_mac":   {insert: "INSERT OR IGNORE INTO record_macs (mac, seq)", cols: 2},
		"record_image": {insert: "INSERT INTO record_images (seq, sha512, glance_id, identifier)", cols: 4},
		"lifetime": {insert: "INSERT INTO lifetimes (id, host, dkey, domain_name, domain_uuid, instance_id, instance_name, " +
			"user_id, user_name, project_id, project_name, admission_seq, start_seq, start_time, start_event, " +
			"end_seq, end_time, end_event)", cols: 18},
		"lt_ip":    {insert: "INSERT OR IGNORE INTO lifetime_ips (ip, lifetime, type)", cols: 3},
		"lt_span":  {insert: "INSERT INTO lifetime_spans (id, from_min, until_min)", cols: 3},
		"lt_mac":   {insert: "INSERT OR IGNORE INTO lifetime_macs (mac, lifetime)", cols: 2},
		"lt_image": {insert: "INSERT INTO lifetime_images (lifetime, sha512, glance_id, identifier, title, version)", cols: 6},
	}
}

// bulkRows is how many rows one bulk INSERT carries.
const bulkRows = 32

// bulk gathers the rows of one INSERT and runs it bulkRows rows at a time.
type bulk struct {
	insert string // up to VALUES
	cols   int
	args   []any
	full   *sql.Stmt // for bulkRows rows, prepared on first use
}

func (b *bulk) statement(rows int) string {
	row := "(?" + strings.Repeat(", ?", b.cols-1) + ")"
	return b.insert + " VALUES " + row + strings.Repeat(", "+row, rows-1)
}

func (b *bulk) add(ctx context.Context, tx *sql.Tx, vals ...any) error {
	b.args = append(b.args, vals...)
	if len(b.args) < bulkRows*b.cols {
		return nil
	}
	if b.full == nil {
		s, err := tx.PrepareContext(ctx, b.statement(bulkRows))
		if err != nil {
			return err
		}
		b.full = s
	}
	_, err := b.full.ExecContext(ctx, b.args...)
	b.args = b.args[:0]
	return err
}

// flush inserts the rows that are left.
func (b *bulk) flush(ctx context.Context, tx *sql.Tx) error {
	if len(b.args) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, b.statement(len(b.args)/b.cols), b.args...)
	b.args = b.args[:0]
	return err
}

func (b *bulk) close() {
	if b.full != nil {
		b.full.Close()
	}
}

func newIngester(ctx context.Context, tx *sql.Tx, fresh bool) (*ingester, error) {
	ing := &ingester{ctx: ctx, tx: tx, fresh: fresh, stmt: map[string]*sql.Stmt{}, bulk: newBulks(), keys: map[dkey]*keyState{}}
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) + 1 FROM lifetimes`).Scan(&ing.nextID); err != nil {
		return nil, err
	}
	for name, q := range statements {
		s, err := tx.PrepareContext(ctx, q)
		if err != nil {
			ing.close()
			return nil, err
		}
		ing.stmt[name] = s
	}
	return ing, nil
}

func (ing *ingester) close() {
	for _, s := range ing.stmt {
		s.Close()
	}
	for _, b := range ing.bulk {
		b.close()
	}
}

func (ing *ingester) exec(name string, args ...any) (sql.Result, error) {
	return ing.stmt[name].ExecContext(ing.ctx, args...)
}

func (ing *ingester) row(table string, vals ...any) error {
	return ing.bulk[table].add(ing.ctx, ing.tx, vals...)
}

// add indexes one journal record.
func (ing *ingester) add(d *decoded) error {
	if ing.n%1024 == 0 {
		if err := ing.ctx.Err(); err != nil {
			return err
		}
	}
	e, r := &d.Entry, &d.rec
	if !d.ok {
		// Not a trace record as this version knows it: keep it, findable by seq and time.
		*r = trace.Record{}
	}
	t := r.Time
	if t.IsZero() {
		t = e.Time
	}
	var inst string
	if r.Instance != nil {
		inst = lower(r.Instance.ID)
	}
	var uid, uname, pid, pname string
	if r.User != nil {
		uid, uname = lower(r.User.ID), r.User.Name
	}
	if r.Project != nil {
		pid, pname = lower(r.Project.ID), r.Project.Name
	}
	if err := ing.row("record", e.Seq, t.UnixNano(), null(r.Host), null(r.Event), null(r.Outcome),
		null(r.Domain.Name), null(lower(r.Domain.UUID)), null(inst), null(uid), null(uname), null(pid), null(pname),
		null(r.Reason), e.Hash, e.Prev); err != nil {
		return err
	}
	if err := ing.row("record_data", e.Seq, string(e.Data)); err != nil {
		return err
	}
	for _, ip := range r.IPs {
		if a := NormalizeIP(ip.Address); a != "" {
			if err := ing.row("record_ip", a, e.Seq); err != nil {
				return err
			}
		}
	}
	for _, m := range r.MACs {
		if m := NormalizeMAC(m); m != "" {
			if err := ing.row("record_mac", m, e.Seq); err != nil {
				return err
			}
		}
	}
	for _, im := range r.Images {
		if im.SHA512 == "" && im.GlanceID == "" && im.Identifier == "" {
			continue
		}
		if err := ing.row("record_image", e.Seq, null(lower(im.SHA512)), null(lower(im.GlanceID)), null(im.Identifier)); err != nil {
			return err
		}
	}
	ing.n++
	ing.lastSeq, ing.lastHash = e.Seq, e.Hash
	return ing.lifecycle(e.Seq, t, r)
}

// lifecycle moves the domain's lifetime along; see ingester.
func (ing *ingester) lifecycle(seq uint64, t time.Time, r *trace.Record) error {
	k := dkey{host: r.Host, domain: domainKey(r.Domain)}
	if k.domain == "" {
		return nil
	}
	s, err := ing.state(k)
	if err != nil {
		return err
	}
	switch r.Event {
	case trace.AdmissionAllow, trace.AdmissionWarn, trace.VMMigratedIn, trace.VMRestored:
		if r.Outcome == trace.OutcomeSuccess {
			s.pending = &admission{seq: seq, rec: *r}
		} else {
			s.pending = nil
		}
	case trace.AdmissionRefuse:
		s.pending = nil
	case trace.VMStarted:
		if s.open != nil {
			if err := ing.end(s, seq, t, r.Event); err != nil {
				return err
			}
		}
		s.open = ing.newLifetime(k, seq, t, r, s.pending)
		s.pending = nil
	case trace.VMReconnected:
		if s.open == nil {
			s.open = ing.newLifetime(k, seq, t, r, s.pending)
			s.pending = nil
		} else {
			s.open.merge(r)
		}
	case trace.VMStopped, trace.VMReleased:
		if s.open != nil {
			s.open.merge(r)
			if err := ing.end(s, seq, t, r.Event); err != nil {
				return err
			}
		}
		s.pending = nil
	default:
		if s.open != nil {
			s.open.merge(r)
		}
	}
	if s.pending == nil && s.pendingDB {
		if _, err := ing.exec("pending_del", k.host, k.domain); err != nil {
			return err
		}
		s.pendingDB = false
	}
	if s.pending == nil && s.open == nil {
		delete(ing.keys, k) // its state is all in the index now
	}
	return nil
}

// state returns what is known of k, from the index when this ingester has not seen it.
func (ing *ingester) state(k dkey) (*keyState, error) {
	if s := ing.keys[k]; s != nil {
		return s, nil
	}
	s := &keyState{}
	ing.keys[k] = s
	if ing.fresh {
		return s, nil
	}
	lt := &lifetime{host: k.host, dkey: k.domain}
	var dn, du, ii, in, ui, un, pi, pn, se sql.NullString
	var adm sql.NullInt64
	var startNS int64
	err := ing.stmt["lt_open"].QueryRowContext(ing.ctx, k.host, k.domain).Scan(&lt.id, &dn, &du, &ii, &in, &ui, &un,
		&pi, &pn, &adm, &lt.startSeq, &startNS, &se, &lt.hasImages)
	switch {
	case err == nil:
		lt.domainName, lt.domainUUID, lt.instanceID, lt.instName = dn.String, du.String, ii.String, in.String
		lt.userID, lt.userName, lt.projectID, lt.projectName = ui.String, un.String, pi.String, pn.String
		lt.admissionSeq, lt.startTime, lt.startEvent = uint64(adm.Int64), time.Unix(0, startNS).UTC(), se.String
		lt.imagesDone, lt.stored = lt.hasImages, true
		s.open = lt
	case err != sql.ErrNoRows:
		return nil, err
	}
	var seq uint64
	var raw string
	err = ing.stmt["pending_get"].QueryRowContext(ing.ctx, k.host, k.domain).Scan(&seq, &raw)
	switch {
	case err == nil:
		a := &admission{seq: seq}
		if json.Unmarshal([]byte(raw), &a.rec) == nil {
			s.pending = a
		}
		s.pendingDB = true
	case err != sql.ErrNoRows:
		return nil, err
	}
	return s, nil
}

func (ing *ingester) newLifetime(k dkey, seq uint64, t time.Time, r *trace.Record, adm *admission) *lifetime {
	lt := &lifetime{id: ing.nextID, host: k.host, dkey: k.domain, startSeq: seq, startTime: t, startEvent: r.Event}
	ing.nextID++
	if adm != nil {
		// First, so that its images, which carry the decision (sha512, identifier), win
		// over the started record's, which name only the Glance image.
		lt.admissionSeq = adm.seq
		lt.merge(&adm.rec)
	}
	lt.merge(r)
	return lt
}

// merge adds r's addresses and fills the fields the lifetime lacks.
func (lt *lifetime) merge(r *trace.Record) {
	fill(&lt.domainName, r.Domain.Name)
	fill(&lt.domainUUID, lower(r.Domain.UUID))
	if i := r.Instance; i != nil {
		fill(&lt.instanceID, lower(i.ID))
		fill(&lt.instName, i.Name)
	}
	if u := r.User; u != nil {
		fill(&lt.userID, lower(u.ID))
		fill(&lt.userName, u.Name)
	}
	if p := r.Project; p != nil {
		fill(&lt.projectID, lower(p.ID))
		fill(&lt.projectName, p.Name)
	}
next:
	for _, ip := range r.IPs {
		a := NormalizeIP(ip.Address)
		if a == "" {
			continue
		}
		for _, x := range lt.ips {
			if x.Address == a {
				continue next
			}
		}
		lt.ips = append(lt.ips, trace.IP{Address: a, Type: ip.Type})
	}
nextMAC:
	for _, m := range r.MACs {
		m = NormalizeMAC(m)
		if m == "" {
			continue
		}
		for _, x := range lt.macs {
			if x == m {
				continue nextMAC
			}
		}
		lt.macs = append(lt.macs, m)
	}
	if !lt.hasImages {
		for _, im := range r.Images {
			if im.SHA512 != "" || im.GlanceID != "" || im.Identifier != "" {
				lt.images = append(lt.images, im)
			}
		}
		lt.hasImages = len(lt.images) > 0
	}
}

func fill(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// end closes the open lifetime of s at the record seq and writes it.
func (ing *ingester) end(s *keyState, seq uint64, t time.Time, event string) error {
	lt := s.open
	lt.endSeq, lt.endTime, lt.endEvent = seq, t, event
	s.open = nil
	return ing.write(lt)
}

// write stores the lifetime's row and what the index does not have yet of its addresses and
// images.
func (ing *ingester) write(lt *lifetime) error {
	var endSeq, endTime, endEvent any
	if lt.endSeq != 0 {
		endSeq, endTime, endEvent = lt.endSeq, lt.endTime.UnixNano(), lt.endEvent
	}
	if !lt.stored {
		var adm any
		if lt.admissionSeq != 0 {
			adm = lt.admissionSeq
		}
		if err := ing.row("lifetime", lt.id, lt.host, lt.dkey, null(lt.domainName), null(lt.domainUUID), null(lt.instanceID),
			null(lt.instName), null(lt.userID), null(lt.userName), null(lt.projectID), null(lt.projectName), adm,
			lt.startSeq, lt.startTime.UnixNano(), lt.startEvent, endSeq, endTime, endEvent); err != nil {
			return err
		}
		if err := ing.row("lt_span", lt.id, spanFrom(lt.startTime), spanUntil(lt.endTime)); err != nil {
			return err
		}
		lt.stored = true
	} else {
		if _, err := ing.exec("lt_update", null(lt.domainName), null(lt.domainUUID), null(lt.instanceID), null(lt.instName),
			null(lt.userID), null(lt.userName), null(lt.projectID), null(lt.projectName), endSeq, endTime, endEvent, lt.id); err != nil {
			return err
		}
		if _, err := ing.exec("span_update", spanUntil(lt.endTime), lt.id); err != nil {
			return err
		}
	}
	for ; lt.ipsDone < len(lt.ips); lt.ipsDone++ {
		ip := lt.ips[lt.ipsDone]
		if err := ing.row("lt_ip", ip.Address, lt.id, null(ip.Type)); err != nil {
			return err
		}
	}
	for ; lt.macsDone < len(lt.macs); lt.macsDone++ {
		if err := ing.row("lt_mac", lt.macs[lt.macsDone], lt.id); err != nil {
			return err
		}
	}
	if !lt.imagesDone {
		for _, im := range lt.images {
			if err := ing.row("lt_image", lt.id, null(lower(im.SHA512)), null(lower(im.GlanceID)), null(im.Identifier),
				null(im.Title), null(im.Version)); err != nil {
				return err
			}
		}
		lt.imagesDone = true
	}
	return nil
}

// flush writes the state that is still in memory: open lifetimes and pending admissions.
func (ing *ingester) flush() error {
	for k, s := range ing.keys {
		if s.open != nil {
			if err := ing.write(s.open); err != nil {
				return err
			}
		}
		if s.pending != nil {
			if _, err := ing.exec("pending_put", k.host, k.domain, s.pending.seq); err != nil {
				return err
			}
			s.pendingDB = true
		}
	}
	for _, b := range ing.bulk {
		if err := b.flush(ing.ctx, ing.tx); err != nil {
			return err
		}
	}
	return nil
}

// spanFrom and spanUntil are a lifetime's bounds in lifetime_spans: whole minutes since
// 1970, rounded outwards so that the span holds every instant the lifetime does.
func spanFrom(t time.Time) int64 { return floorDiv(t.UnixNano(), int64(time.Minute)) }

func spanUntil(t time.Time) int64 {
	if t.IsZero() {
		return math.MaxInt32 // open
	}
	return -floorDiv(-t.UnixNano(), int64(time.Minute))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// domainKey names a domain on its host: its uuid, which libvirt keeps for the domain's
// life, or its name when a record lacks the uuid (the hook could not read the XML).
func domainKey(d trace.Domain) string {
	if d.UUID != "" {
		return lower(d.UUID)
	}
	if d.Name != "" {
		return "name:" + d.Name
	}
	return ""
}

// NormalizeIP is the form addresses take in the index: Go's canonical text, so that
// 2001:DB8::1 and 2001:db8:0::1 are one address. Text that is not an address is kept as is.
func NormalizeIP(s string) string {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}

// NormalizeMAC is the form MAC addresses take in the index: lower case, colons.
func NormalizeMAC(s string) string {
	s = strings.TrimSpace(s)
	if m, err := net.ParseMAC(s); err == nil {
		return m.String()
	}
	return strings.ToLower(s)
}

// lower is for ids that are hex (uuids, sha512): people paste them in either case.
func lower(s string) string { return strings.ToLower(s) }

// null stores an absent string as NULL, so that `col = ?` never matches it.
func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}
