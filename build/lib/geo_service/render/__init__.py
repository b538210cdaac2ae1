"""What people look at: Folium maps, the coverage report, QR codes, navigation links, page templates and static assets."""
