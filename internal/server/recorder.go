package server

import (
	"net/http"
	"time"

	"github.com/tiercache/tiercache"
)

// statusRecorder remembers the status a handler answered with, and the
// bytes of its body. One per request serves every middleware that needs
// it (recorder): the outermost handler takes it from the server's pool
// and puts it back when the chain returns (recorded).
type statusRecorder struct {
	http.ResponseWriter
	code  int // zero until the header is written
	bytes int64

	// start is when the handler chain received the request.
	start time.Time

	// muxErrors, until the header is written, replaces an error answer
	// to req that ServeMux wrote itself (req.Pattern empty) with its JSON
	// form (jsonMuxErrors); replaced then drops ServeMux's plain text.
	muxErrors *Server
	req       *http.Request
	replaced  bool

	// raw receives the value a GET reads (readDestination). Its Data
	// keeps its capacity from one request to the next, so that copying
	// a value out of L1 allocates nothing.
	raw tiercache.Raw
}

// maxKeptValue is the largest capacity of statusRecorder.raw.Data that
// goes back to the pool: a rare large value does not stay in memory
// once per pooled recorder.
const maxKeptValue = 4 << 10

// recorded wraps every request in a statusRecorder from the server's
// pool, and puts it back when next returns: net/http takes nothing from
// the recorder after that (what was written is in its own buffers, the
// headers were copied when the status was written), and a handler must
// not use its ResponseWriter after it returns. A recorder whose request
// panicked through the chain is left to the garbage collector.
func (s *Server) recorded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := s.recorders.Get().(*statusRecorder)
		rec.ResponseWriter, rec.start = w, time.Now()
		next.ServeHTTP(rec, r)
		data := rec.raw.Data[:0]
		if cap(data) > maxKeptValue {
			data = nil
		}
		*rec = statusRecorder{raw: tiercache.Raw{Data: data}}
		s.recorders.Put(rec)
	})
}

// recorder returns w if it is a statusRecorder already, else wraps it in
// one.
func recorder(w http.ResponseWriter) *statusRecorder {
	if rec, ok := w.(*statusRecorder); ok {
		return rec
	}
	return &statusRecorder{ResponseWriter: w, start: time.Now()}
}

// readDestination returns where a GET answered on w reads its value
// into: the request's recorder's, or a new one.
func readDestination(w http.ResponseWriter) *tiercache.Raw {
	if rec, ok := w.(*statusRecorder); ok {
		return &rec.raw
	}
	return new(tiercache.Raw)
}

func (r *statusRecorder) WriteHeader(code int) {
	if s := r.muxErrors; s != nil {
		r.muxErrors = nil
		if r.req.Pattern == "" && code >= 400 {
			s.writeMuxError(r, r.req, code)
			r.replaced = true
			return
		}
	}
	if r.code == 0 && code >= 200 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.replaced {
		return len(b), nil
	}
	if r.code == 0 {
		r.code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
