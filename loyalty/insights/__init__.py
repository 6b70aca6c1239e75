"""What the Overview and Analyse pages read: page-ready frames over the analytics engine and the program's configuration."""
