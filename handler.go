package anonymous

import "net/http"

// Handler serves the JSON endpoints under Options.BasePath.
func (m *Manager) Handler() http.Handler { return m.api }

func (m *Manager) newAPI() (http.Handler, error) { return http.NotFoundHandler(), nil }
