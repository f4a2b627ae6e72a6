package index

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

// Filter selects records, or with At the VM lifetimes that included an instant. Every field
// set must match; empty fields match anything.
type Filter struct {
	IP       string // an address the VM held (Nova's fixed and floating addresses)
	MAC      string
	Instance string // Nova instance uuid, domain uuid or domain name
	User     string // Keystone user id or name
	Project  string // Keystone project id or name
	Image    string // sha512, Glance image id or image list identifier
	Host     string

	// Since and Until bound the records' times, both included; zero is unbounded. They
	// select records and cannot go with At.
	Since, Until time.Time

	// At asks for the VM lifetimes that included this instant instead of records: with IP,
	// who held the address then.
	At time.Time

	// Limit keeps the last Limit results (the latest records, the lifetimes that began
	// last); 0 keeps all.
	Limit int
}

// ErrInvalidFilter: the filter cannot be answered as given.
var ErrInvalidFilter = errors.New("invalid filter")

// Result is one answer: a record, or a lifetime when the filter has At.
type Result struct {
	Entry    *Entry    `json:"entry,omitempty"`
	Lifetime *Lifetime `json:"lifetime,omitempty"`
}

// Entry is one indexed record with its place in the journal's hash chain.
type Entry struct {
	Seq    uint64       `json:"seq"`
	Prev   string       `json:"prev"`
	Hash   string       `json:"hash"`
	Record trace.Record `json:"record"`
}

// Lifetime is one run of a VM on a host, as the records show it.
type Lifetime struct {
	Host     string          `json:"host"`
	Domain   trace.Domain    `json:"domain"`
	Instance *trace.Instance `json:"instance,omitempty"`
	User     *trace.Owner    `json:"user,omitempty"`
	Project  *trace.Owner    `json:"project,omitempty"`
	Images   []trace.Image   `json:"images,omitempty"`
	IPs      []trace.IP      `json:"ips,omitempty"`
	MACs     []string        `json:"macs,omitempty"`

	// From is the time of the record that opened it: vm.started, or vm.reconnected when
	// the start was not in the journal (the VM ran since before then).
	From      time.Time `json:"from"`
	FromSeq   uint64    `json:"from_seq"`
	FromEvent string    `json:"from_event"`
	// AdmissionSeq is the admission record that allowed the start, when there was one.
	AdmissionSeq uint64 `json:"admission_seq,omitempty"`
	// Until is when it ended, nil while it runs (as far as the journal tells). UntilEvent
	// is vm.stopped or vm.released, or vm.started when a later start of the same domain
	// ended it because its stop was never recorded (a host crash): it ended at the latest
	// then.
	Until      *time.Time `json:"until,omitempty"`
	UntilSeq   uint64     `json:"until_seq,omitempty"`
	UntilEvent string     `json:"until_event,omitempty"`
}

// Query answers f from the index as it is; call Update first to take in the latest records.
// Results come in the order of the journal (lifetimes: of their start).
func (ix *Index) Query(ctx context.Context, f Filter) ([]Result, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.db == nil {
		return nil, errors.New("trace index: closed")
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	res, err := ix.query(ctx, f)
	if damage := err; isDamaged(damage) {
		if err := ix.reset(ctx, damage); err != nil {
			return nil, fmt.Errorf("trace index %s: %w", ix.path, err)
		}
		// A break in the journal's chain leaves the records before it to answer from;
		// Update reports it.
		var p *journal.Problem
		if _, err := ix.update(ctx, true); err != nil && !errors.As(err, &p) {
			return nil, fmt.Errorf("trace index %s: %w", ix.path, err)
		}
		res, err = ix.query(ctx, f)
	}
	if err != nil {
		return nil, fmt.Errorf("trace index %s: query: %w", ix.path, err)
	}
	return res, nil
}

func (f Filter) check() error {
	if !f.At.IsZero() && (!f.Since.IsZero() || !f.Until.IsZero()) {
		return fmt.Errorf("%w: --at asks for the lifetimes at one instant; --since and --until select records", ErrInvalidFilter)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return fmt.Errorf("%w: --until %s is before --since %s", ErrInvalidFilter, f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	if f.IP != "" {
		if _, err := netip.ParseAddr(strings.TrimSpace(f.IP)); err != nil {
			return fmt.Errorf("%w: --ip %q is not an IP address", ErrInvalidFilter, f.IP)
		}
	}
	if f.Limit < 0 {
		return fmt.Errorf("%w: --limit %d is negative", ErrInvalidFilter, f.Limit)
	}
	return nil
}

// where collects the conditions of a query.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// owner adds the conditions every query shares, on table alias t whose columns are named as
// in records and lifetimes. Ids are matched in lower case (uuids and hashes are pasted in
// either case), names as given.
func (w *where) owner(t string, f Filter) {
	if f.Instance != "" {
		w.add(fmt.Sprintf("(%[1]s.instance_id = ? OR %[1]s.domain_uuid = ? OR %[1]s.domain_name = ?)", t),
			lower(f.Instance), lower(f.Instance), f.Instance)
	}
	if f.User != "" {
		w.add(fmt.Sprintf("(%[1]s.user_id = ? OR %[1]s.user_name = ?)", t), lower(f.User), f.User)
	}
	if f.Project != "" {
		w.add(fmt.Sprintf("(%[1]s.project_id = ? OR %[1]s.project_name = ?)", t), lower(f.Project), f.Project)
	}
	if f.Host != "" {
		w.add(t+".host = ?", f.Host)
	}
}

func (ix *Index) query(ctx context.Context, f Filter) ([]Result, error) {
	if !f.At.IsZero() {
		return ix.lifetimes(ctx, f)
	}
	return ix.records(ctx, f)
}

// sqlFor is the query that answers f, and its arguments.
func sqlFor(f Filter) (string, []any) {
	if !f.At.IsZero() {
		return lifetimesSQL(f)
	}
	return recordsSQL(f)
}

func recordsSQL(f Filter) (string, []any) {
	var w where
	selective := false
	if f.IP != "" {
		w.add("r.seq IN (SELECT seq FROM record_ips WHERE ip = ?)", NormalizeIP(f.IP))
		selective = true
	}
	if f.MAC != "" {
		w.add("r.seq IN (SELECT seq FROM record_macs WHERE mac = ?)", NormalizeMAC(f.MAC))
		selective = true
	}
	if f.Image != "" {
		w.add("r.seq IN (SELECT seq FROM record_images WHERE sha512 = ? OR glance_id = ? OR identifier = ?)",
			lower(f.Image), lower(f.Image), f.Image)
		selective = true
	}
	selective = selective || f.Instance != "" || f.User != "" || f.Project != ""
	w.owner("r", f)
	if !f.Since.IsZero() {
		w.add("r.time >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		w.add("r.time <= ?", f.Until.UnixNano())
	}
	// The latest first, so that LIMIT keeps the latest; records then sorts them by seq.
	order := "r.seq DESC"
	switch {
	case selective:
		// Without the +, SQLite may walk every record in seq order to serve the ORDER BY
		// and LIMIT rather than look up the few that match.
		order = "+r.seq DESC"
	case !f.Since.IsZero() || !f.Until.IsZero():
		// Walks the time index from the end of the window, and stops at the limit; seq order
		// could walk every record after the window first.
		order = "r.time DESC, r.seq DESC"
	}
	q := "SELECT r.seq, r.prev, r.hash, d.raw FROM records r JOIN record_data d ON d.seq = r.seq" + w.String() + " ORDER BY " + order
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return q, w.args
}

func (ix *Index) records(ctx context.Context, f Filter) ([]Result, error) {
	q, args := recordsSQL(f)
	rows, err := ix.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var res []Result
	for rows.Next() {
		var e Entry
		var raw string
		if err := rows.Scan(&e.Seq, &e.Prev, &e.Hash, &raw); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(raw), &e.Record); err != nil {
			e.Record = trace.Record{}
		}
		res = append(res, Result{Entry: &e})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(res, func(a, b Result) int { return cmp.Compare(a.Entry.Seq, b.Entry.Seq) })
	return res, nil
}

func lifetimesSQL(f Filter) (string, []any) {
	var w where
	t := f.At.UnixNano()
	if f.IP == "" && f.MAC == "" && f.Image == "" && f.Instance == "" && f.User == "" && f.Project == "" {
		// Nothing narrows the lifetimes but the instant: the R*Tree finds those that span it.
		// (Otherwise the filter's own index finds fewer, and the times are checked on those.)
		m := f.At.Unix() / 60
		w.add("l.id IN (SELECT id FROM lifetime_spans WHERE from_min <= ? AND until_min >= ?)", m+1, m-1)
	}
	// Unary + keeps SQLite from scanning every lifetime that began before the instant.
	w.add("+l.start_time <= ? AND (l.end_time IS NULL OR +l.end_time >= ?)", t, t)
	if f.IP != "" {
		w.add("l.id IN (SELECT lifetime FROM lifetime_ips WHERE ip = ?)", NormalizeIP(f.IP))
	}
	if f.MAC != "" {
		w.add("l.id IN (SELECT lifetime FROM lifetime_macs WHERE mac = ?)", NormalizeMAC(f.MAC))
	}
	if f.Image != "" {
		w.add("l.id IN (SELECT lifetime FROM lifetime_images WHERE sha512 = ? OR glance_id = ? OR identifier = ?)",
			lower(f.Image), lower(f.Image), f.Image)
	}
	w.owner("l", f)
	q := `SELECT l.id, l.host, l.domain_name, l.domain_uuid, l.instance_id, l.instance_name, l.user_id, l.user_name,
		l.project_id, l.project_name, l.admission_seq, l.start_seq, l.start_time, l.start_event, l.end_seq, l.end_time,
		l.end_event FROM lifetimes l` + w.String() + " ORDER BY l.start_time DESC, l.id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return q, w.args
}

func (ix *Index) lifetimes(ctx context.Context, f Filter) ([]Result, error) {
	q, args := lifetimesSQL(f)
	rows, err := ix.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var res []Result
	var ids []int64
	for rows.Next() {
		var id int64
		var lt Lifetime
		var dn, du, ii, in, ui, un, pi, pn, ee sql.NullString
		var adm, es, et sql.NullInt64
		var st int64
		if err := rows.Scan(&id, &lt.Host, &dn, &du, &ii, &in, &ui, &un, &pi, &pn, &adm, &lt.FromSeq, &st,
			&lt.FromEvent, &es, &et, &ee); err != nil {
			rows.Close()
			return nil, err
		}
		lt.Domain = trace.Domain{Name: dn.String, UUID: du.String}
		if ii.Valid || in.Valid {
			lt.Instance = &trace.Instance{ID: ii.String, Name: in.String}
		}
		if ui.Valid || un.Valid {
			lt.User = &trace.Owner{ID: ui.String, Name: un.String}
		}
		if pi.Valid || pn.Valid {
			lt.Project = &trace.Owner{ID: pi.String, Name: pn.String}
		}
		lt.AdmissionSeq = uint64(adm.Int64)
		lt.From = time.Unix(0, st).UTC()
		if es.Valid {
			u := time.Unix(0, et.Int64).UTC()
			lt.Until, lt.UntilSeq, lt.UntilEvent = &u, uint64(es.Int64), ee.String
		}
		res = append(res, Result{Lifetime: &lt})
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := ix.details(ctx, ids, res); err != nil {
		return nil, err
	}
	slices.Reverse(res)
	return res, nil
}

// details reads the addresses and images of the lifetimes ids, which res holds in the same
// order: three queries per 500 lifetimes rather than three per lifetime.
func (ix *Index) details(ctx context.Context, ids []int64, res []Result) error {
	const chunk = 500 // SQLite takes at most 32766 parameters
	for len(ids) > chunk {
		if err := ix.details(ctx, ids[:chunk], res[:chunk]); err != nil {
			return err
		}
		ids, res = ids[chunk:], res[chunk:]
	}
	if len(ids) == 0 {
		return nil
	}
	byID := make(map[int64]*Lifetime, len(ids))
	args := make([]any, len(ids))
	for i, id := range ids {
		byID[id] = res[i].Lifetime
		args[i] = id
	}
	in := "(?" + strings.Repeat(", ?", len(ids)-1) + ")"
	each := func(q string, fn func(lt *Lifetime, vals []sql.NullString)) error {
		rows, err := ix.db.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		vals := make([]sql.NullString, len(cols)-1)
		dst := make([]any, len(cols))
		var id int64
		dst[0] = &id
		for i := range vals {
			dst[i+1] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(dst...); err != nil {
				return err
			}
			fn(byID[id], vals)
		}
		return rows.Err()
	}
	err := each(`SELECT lifetime, ip, type FROM lifetime_ips WHERE lifetime IN `+in+` ORDER BY lifetime, ip`,
		func(lt *Lifetime, v []sql.NullString) {
			lt.IPs = append(lt.IPs, trace.IP{Address: v[0].String, Type: v[1].String})
		})
	if err != nil {
		return err
	}
	err = each(`SELECT lifetime, mac FROM lifetime_macs WHERE lifetime IN `+in+` ORDER BY lifetime, mac`,
		func(lt *Lifetime, v []sql.NullString) { lt.MACs = append(lt.MACs, v[0].String) })
	if err != nil {
		return err
	}
	return each(`SELECT lifetime, sha512, glance_id, identifier, title, version FROM lifetime_images
		WHERE lifetime IN `+in+` ORDER BY lifetime, rowid`,
		func(lt *Lifetime, v []sql.NullString) {
			lt.Images = append(lt.Images, trace.Image{SHA512: v[0].String, GlanceID: v[1].String,
				Identifier: v[2].String, Title: v[3].String, Version: v[4].String})
		})
}

// ParseTime reads the times the query flags take: RFC 3339 (2026-11-20T10:00:00Z, with
// fractions of a second and offsets) or the same to the minute (2026-11-20T10:00Z).
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-20T10:00:00Z) or to the minute (2026-11-20T10:00Z)", s)
}
