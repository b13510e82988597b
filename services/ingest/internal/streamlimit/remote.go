package streamlimit

import "time"

// remoteTable holds the counts the other instances announced: per instance and key, the last
// count and when it was heard. An entry heard longer than expiry ago no longer counts (sum
// skips it) and is removed by sweep. It is not safe for concurrent use: the Limiter's lock
// guards it.
type remoteTable struct {
	max    int           // most entries held, over all instances
	expiry time.Duration // how long an entry counts after it was last heard
	n      int           // entries held
	// dropped counts the new entries not kept, the table being full, since the last sweep.
	dropped int
	by      map[instanceID]map[string]remoteEntry
}

type remoteEntry struct {
	count int
	heard time.Time
}

func newRemoteTable(maxEntries int, expiry time.Duration) remoteTable {
	return remoteTable{max: maxEntries, expiry: expiry, by: map[instanceID]map[string]remoteEntry{}}
}

// set records that instance id has count live streams of key, heard now. A count of 0
// deletes the entry. When the table is full a new entry is dropped (its streams do not count
// here: lenient), while entries already held are still updated.
func (r *remoteTable) set(id instanceID, key string, count int, now time.Time) {
	m := r.by[id]
	if count <= 0 {
		if _, ok := m[key]; ok {
			delete(m, key)
			r.n--
			if len(m) == 0 {
				delete(r.by, id)
			}
		}
		return
	}
	if _, ok := m[key]; !ok {
		if r.n >= r.max {
			r.dropped++
			return
		}
		if m == nil {
			m = map[string]remoteEntry{}
			r.by[id] = m
		}
		r.n++
	}
	m[key] = remoteEntry{count: count, heard: now}
}

// forget removes every entry of instance id.
func (r *remoteTable) forget(id instanceID) {
	r.n -= len(r.by[id])
	delete(r.by, id)
}

// sum is the live streams of key on the other instances, as last heard within expiry.
func (r *remoteTable) sum(key string, now time.Time) int {
	s := 0
	for _, m := range r.by {
		if e, ok := m[key]; ok && now.Sub(e.heard) < r.expiry {
			s += e.count
		}
	}
	return s
}

// instances lists the instances with entries.
func (r *remoteTable) instances() []instanceID {
	ids := make([]instanceID, 0, len(r.by))
	for id := range r.by {
		ids = append(ids, id)
	}
	return ids
}

// sweepInstance removes the expired entries of instance id and returns how many.
func (r *remoteTable) sweepInstance(id instanceID, now time.Time) int {
	m := r.by[id]
	expired := 0
	for k, e := range m {
		if now.Sub(e.heard) >= r.expiry {
			delete(m, k)
			expired++
		}
	}
	r.n -= expired
	if m != nil && len(m) == 0 {
		delete(r.by, id)
	}
	return expired
}
