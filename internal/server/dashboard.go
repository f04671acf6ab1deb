package server

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// assets holds the dashboard: its page, script and style, and the chart
// library (uPlot, MIT, vendored under assets/vendor/uplot with its
// licence). Nothing is loaded from elsewhere.
//
//go:embed assets
var assets embed.FS

// dashboardCSP keeps the page to its own assets. Styles may be inline:
// the chart library sets element styles.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboard answers GET / with the live dashboard page.
func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r, "refresh") {
		return
	}
	page, err := assets.ReadFile("assets/index.html")
	if err != nil {
		s.writeError(w, http.StatusInternalServerError, codeInternal, "the dashboard is missing from the build")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(page)
}

// assetsHandler answers GET /assets/... from the embedded files; the URL
// path is the path in the embedded tree. Directories are not listed.
func (s *Server) assetsHandler() http.Handler {
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.checkQuery(w, r) {
			return
		}
		if st, err := fs.Stat(assets, strings.TrimPrefix(r.URL.Path, "/")); err != nil || st.IsDir() {
			s.writeError(w, http.StatusNotFound, codeNoSuchEndpoint, "no such asset")
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
