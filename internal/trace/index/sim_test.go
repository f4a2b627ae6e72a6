package index

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/vmgate/vmgate/internal/trace"
)

// sim plays a busy hypervisor: VMs start (a few are refused), run for a while and stop,
// taking addresses from a small pool so that every address is held by many VMs over time,
// and libvirtd restarts now and then. It yields records as the hook writes them.
type sim struct {
	rng     *rand.Rand
	now     time.Time
	host    string
	running []*simVM
	free    []netip.Addr // fixed addresses not in use
	n       int          // VMs made
	images  []trace.Image
	target  int // VMs running at once, about
}

type simVM struct {
	name, uuid string
	user, proj trace.Owner
	image      trace.Image
	ips        []trace.IP
	mac        string
}

func newSim(seed uint64, start time.Time, addrs, target int) *sim {
	s := &sim{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: start, host: "node-01", target: target}
	base := netip.MustParseAddr("10.0.0.0")
	for range addrs {
		base = base.Next()
		s.free = append(s.free, base)
	}
	for i := range 50 {
		sum := sha512.Sum512([]byte(fmt.Sprint("image ", i)))
		s.images = append(s.images, trace.Image{Disk: "vda", GlanceID: fmt.Sprintf("0000%04x-2b1d-4e3f-8a9b-5c6d7e8f9a0b", i),
			SHA512: hex.EncodeToString(sum[:]), Identifier: fmt.Sprintf("img-%02d", i), Title: "Worker", Version: "1",
			Status: "endorsed", Subscription: "example", List: "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", ListVersion: "7",
			Endorser: "/DC=org/DC=example/CN=Endorser"})
	}
	return s
}

// next returns the records of the next event on the host.
func (s *sim) next() []trace.Record {
	s.now = s.now.Add(time.Duration(1+s.rng.IntN(30)) * time.Second)
	switch {
	case s.rng.IntN(20000) == 0 && len(s.running) > 0:
		// libvirtd restarts: a reconnect for every running VM.
		var recs []trace.Record
		for _, vm := range s.running {
			recs = append(recs, s.record(vm, trace.VMReconnected, "reconnect begin", trace.OutcomeSuccess, false))
		}
		return recs
	case len(s.free) > 0 && (len(s.running) < s.target/2 || len(s.running) < s.target && s.rng.IntN(2) == 0):
		vm := s.newVM()
		if s.rng.IntN(20) == 0 {
			// Refused: libvirt then runs stopped and release, never started.
			s.release(vm)
			r := s.record(vm, trace.AdmissionRefuse, "prepare begin", trace.OutcomeFailure, true)
			r.Reason = "image is not endorsed: revoked"
			return []trace.Record{r, s.record(vm, trace.VMStopped, "stopped end", trace.OutcomeSuccess, false),
				s.record(vm, trace.VMReleased, "release end", trace.OutcomeSuccess, false)}
		}
		s.running = append(s.running, vm)
		return []trace.Record{s.record(vm, trace.AdmissionAllow, "prepare begin", trace.OutcomeSuccess, true),
			s.record(vm, trace.VMStarted, "started begin", trace.OutcomeSuccess, false)}
	default:
		i := s.rng.IntN(len(s.running))
		vm := s.running[i]
		s.running[i] = s.running[len(s.running)-1]
		s.running = s.running[:len(s.running)-1]
		s.release(vm)
		return []trace.Record{s.record(vm, trace.VMStopped, "stopped end", trace.OutcomeSuccess, false),
			s.record(vm, trace.VMReleased, "release end", trace.OutcomeSuccess, false)}
	}
}

func (s *sim) newVM() *simVM {
	s.n++
	i := s.rng.IntN(len(s.free))
	ip := s.free[i]
	s.free[i] = s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	u := s.rng.IntN(500)
	vm := &simVM{name: fmt.Sprintf("instance-%08x", s.n), uuid: fmt.Sprintf("%08x-5b8a-4f1e-9c2d-0a1b2c3d4e5f", s.n),
		user:  trace.Owner{ID: fmt.Sprintf("%032x", 0x9f8e0000+u), Name: fmt.Sprintf("user%03d", u)},
		proj:  trace.Owner{ID: fmt.Sprintf("%032x", 0x0a1b0000+u/5), Name: fmt.Sprintf("project%02d", u/5)},
		image: s.images[s.rng.IntN(len(s.images))], ips: []trace.IP{{Address: ip.String(), Type: "fixed"}},
		mac: fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", byte(s.n>>16), byte(s.n>>8), byte(s.n))}
	return vm
}

func (s *sim) release(vm *simVM) {
	s.free = append(s.free, netip.MustParseAddr(vm.ips[0].Address))
}

func (s *sim) record(vm *simVM, event, op, outcome string, decision bool) trace.Record {
	r := trace.Record{Time: s.now, Host: s.host, Event: event, Outcome: outcome, Op: op,
		Domain: trace.Domain{Name: vm.name, UUID: vm.uuid}, Instance: &trace.Instance{ID: vm.uuid, Name: "vm-" + vm.name[9:]},
		User: &vm.user, Project: &vm.proj, MACs: []string{vm.mac}, IPs: vm.ips, Version: "test"}
	if decision {
		r.Mode = "enforce"
		r.Images = []trace.Image{vm.image}
	} else {
		r.Images = []trace.Image{{GlanceID: vm.image.GlanceID}}
	}
	return r
}
