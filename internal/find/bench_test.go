package find

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// places are the second field of the benchmark records: text that is not
// a person's name but shares the index with them.
var places = []string{
	"Paris", "Lyon", "Marseille", "Tunis", "Alger", "Oran", "Casablanca", "Rabat",
	"Cairo", "Alexandria", "Amman", "Beirut", "Damascus", "Aleppo", "Baghdad", "Riyadh",
	"Jeddah", "Doha", "Dubai", "Moscow", "Saint Petersburg", "Kazan", "Grozny", "Kyiv",
	"Minsk", "London", "Manchester", "Brussels", "Berlin", "Hamburg", "القاهرة", "دمشق",
	"بيروت", "تونس", "Москва", "Казань", "Грозный", "Киев",
}

// benchRecords generates n records deterministically: a name made of two
// spellings from testdata/names.tsv (a given name and a family name, in
// any script) and a place.
func benchRecords(tb testing.TB, n int) [][2]string {
	names := loadNames(tb)
	r := rand.New(rand.NewPCG(100000, 17))
	out := make([][2]string, n)
	for i := range out {
		given := names[r.IntN(len(names))].spelling
		family := names[r.IntN(len(names))].spelling
		out[i] = [2]string{given + " " + family, places[r.IntN(len(places))]}
	}
	return out
}

var bench100k struct {
	once      sync.Once
	index     *Index
	records   [][2]string
	heapBytes uint64 // live heap the index took
}

func index100k(b *testing.B) *Index {
	bench100k.once.Do(func() {
		bench100k.records = benchRecords(b, 100_000)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := NewIndex()
		for i, rec := range bench100k.records {
			id := fmt.Sprintf("r%06d", i)
			x.Add(id, "name", rec[0])
			x.Add(id, "place", rec[1])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		bench100k.heapBytes = after.HeapAlloc - before.HeapAlloc
		bench100k.index = x
	})
	return bench100k.index
}

// BenchmarkSearch searches an index of 100,000 two-field records for names
// from the test set, one word or two, and reports the latency percentiles
// of single queries and the size of the index.
func BenchmarkSearch(b *testing.B) {
	x := index100k(b)
	names := loadNames(b)
	r := rand.New(rand.NewPCG(1, 2))
	queries := make([]string, 1000)
	for i := range queries {
		q := names[r.IntN(len(names))].spelling
		if i%4 == 0 {
			q += " " + names[r.IntN(len(names))].spelling
		}
		queries[i] = q
	}
	latencies := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		x.Search(queries[i%len(queries)], 10)
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	s := x.Stats()
	b.ReportMetric(float64(s.Docs), "docs")
	b.ReportMetric(float64(s.Terms), "terms")
	b.ReportMetric(float64(s.Postings), "postings")
	b.ReportMetric(float64(persistedBytes(s)), "persisted-bytes")
	b.ReportMetric(float64(bench100k.heapBytes), "heap-bytes")
}

// persistedBytes estimates the posting lists on disk in the layout of
// docs/find.md, before Badger's own overhead: per term a key of prefix,
// space ID and 16-byte tag, and a sealed list (24-byte nonce, 16-byte
// tag); per posting a 16-byte record ID.
func persistedBytes(s Stats) int {
	return s.Terms*(1+16+16+24+16) + s.Postings*16
}

// BenchmarkAdd indexes the two fields of one record per iteration, into an
// index that grows to b.N records, and reports records per second.
func BenchmarkAdd(b *testing.B) {
	records := benchRecords(b, 100_000)
	x := NewIndex()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		rec := records[i%len(records)]
		id := fmt.Sprintf("r%07d", i)
		x.Add(id, "name", rec[0])
		x.Add(id, "place", rec[1])
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkTerms is the indexing work an agent that persists postings does
// per record besides its writes: the terms of both fields.
func BenchmarkTerms(b *testing.B) {
	records := benchRecords(b, 10_000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rec := records[i%len(records)]
		Terms(rec[0])
		Terms(rec[1])
	}
}
